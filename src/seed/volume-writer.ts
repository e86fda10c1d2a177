/**
 * Writes a seed's tar volumes (tar-stream), one after another: a volume is closed and the
 * next one started when the next entry would take it past the size limit. Each volume starts
 * with its label entry, is written as `<name>.partial`, and on close is synced and renamed
 * to its final name; the caller's `onVolumeClosed` then records it (the export checkpoint).
 *
 * Entries' bytes are handed over without copying: `add` resolves once the entry is queued
 * (at most about one entry is queued ahead of the disk), and calls `release` once its bytes
 * are in the file and hashed, so the caller can reuse the buffer. The SHA-256 of each volume
 * is computed over the bytes as they are written, on a worker thread (hash-worker.ts).
 */
import { open, rename, rm, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import tar from 'tar-stream';
import { FerryError, VolumeHasher, fsyncDirectory, writeFully } from '../core/index.js';
import { seedVersion, volumeLabelName, volumeName, type SeedVolumeEntry, type VolumeLabel } from './device-manifest.js';

const block = 512;
const endOfArchiveBytes = 1024;
const backgroundSyncBytes = 32 * 1024 * 1024;

/** Bytes an entry of `size` bytes takes in a tar archive (header and padded data). */
export function tarEntryBytes(size: number): number {
  return block + Math.ceil(size / block) * block;
}

export interface VolumeSeriesOptions {
  dir: string;
  seedId: string;
  volumeSizeBytes: number;
  /** Index of the first volume to write (after a resume, the count of complete ones). */
  firstIndex: number;
  /** Entry times (the seed's start), so volumes do not depend on when they were written. */
  mtime: Date;
  /** Called after a volume is durable under its final name, before the next one starts. */
  onVolumeClosed: (volume: SeedVolumeEntry) => Promise<void>;
}

interface OpenVolume {
  index: number;
  name: string;
  path: string;
  handle: FileHandle;
  pack: tar.Pack;
  /** Bytes the entries added so far will take (what `written` reaches after finalize, minus the end). */
  plannedBytes: number;
  written: number;
  chunks: number;
  releases: Array<{ end: number; release: () => void }>;
  /** A datasync started in the background, and the byte count it was started at. */
  syncing: Promise<void> | undefined;
  syncedAt: number;
  pump: Promise<void>;
  failed: Promise<never>;
}

export class VolumeSeries {
  private current: OpenVolume | undefined;
  private nextIndex: number;
  private hasher: VolumeHasher | undefined;

  constructor(private readonly options: VolumeSeriesOptions) {
    this.nextIndex = options.firstIndex;
    const smallest = tarEntryBytes(4096) + tarEntryBytes(4096) + endOfArchiveBytes;
    if (options.volumeSizeBytes < smallest) throw new FerryError('bad-input', `volume size: expected at least ${smallest} bytes, received ${options.volumeSizeBytes}`);
  }

  /** Adds a chunk entry; rotates first if it would not fit in the current volume. */
  async add(name: string, data: Buffer, release: () => void): Promise<void> {
    const need = tarEntryBytes(data.byteLength);
    if (this.current && this.current.chunks > 0 && this.current.plannedBytes + need + endOfArchiveBytes > this.options.volumeSizeBytes) {
      await this.closeCurrent();
    }
    const volume = this.current ?? (await this.openNext());
    if (volume.plannedBytes + need + endOfArchiveBytes > this.options.volumeSizeBytes) {
      throw new FerryError('bad-input', `volume size ${this.options.volumeSizeBytes} bytes is too small for an entry of ${data.byteLength} bytes (chunk size plus headers)`);
    }
    volume.chunks++;
    await this.entry(volume, name, data, release);
  }

  /** Closes the volume being written (if any): the last one of the seed. */
  async finish(): Promise<void> {
    try {
      if (this.current) await this.closeCurrent();
    } finally {
      await this.hasher?.close();
      this.hasher = undefined;
    }
  }

  /** Stops without closing: the open volume stays `.partial` and is rewritten on resume. */
  async abandon(): Promise<void> {
    const volume = this.current;
    this.current = undefined;
    if (volume) {
      volume.pack.destroy();
      await volume.pump.catch(() => {});
      await volume.handle.close().catch(() => {});
    }
    await this.hasher?.close();
    this.hasher = undefined;
  }

  private async openNext(): Promise<OpenVolume> {
    const index = this.nextIndex++;
    const name = volumeName(index);
    const path = join(this.options.dir, `${name}.partial`);
    const handle = await open(path, 'w', 0o600);
    const pack = tar.pack();
    let fail: (err: unknown) => void = () => {};
    const failed = new Promise<never>((_, reject) => (fail = reject));
    failed.catch(() => {});
    const volume: OpenVolume = { index, name, path, handle, pack, plannedBytes: 0, written: 0, chunks: 0, releases: [], syncing: undefined, syncedAt: 0, pump: Promise.resolve(), failed };
    volume.pump = this.pump(volume).catch((err: unknown) => {
      const error = new FerryError('io', `writing volume ${join(this.options.dir, name)} failed: ${(err as Error).message}`, { cause: err });
      fail(error);
      throw error;
    });
    volume.pump.catch(() => {});
    this.hasher ??= new VolumeHasher();
    this.hasher.onHashed = () => this.releaseDone(volume);
    this.current = volume;
    const label: VolumeLabel = { format: 'ferry-seed-volume', version: seedVersion, seedId: this.options.seedId, index };
    await this.entry(volume, volumeLabelName, Buffer.from(`${JSON.stringify(label)}\n`), () => {});
    return volume;
  }

  private async entry(volume: OpenVolume, name: string, data: Buffer, release: () => void): Promise<void> {
    volume.releases.push({ end: volume.plannedBytes + block + data.byteLength, release });
    volume.plannedBytes += tarEntryBytes(data.byteLength);
    const queued = new Promise<void>((resolve, reject) => {
      volume.pack.entry({ name, size: data.byteLength, mode: 0o600, mtime: this.options.mtime, type: 'file', uname: '', gname: '' }, data, (err) =>
        err ? reject(err) : resolve(),
      );
    });
    await Promise.race([queued, volume.failed]);
  }

  private async pump(volume: OpenVolume): Promise<void> {
    for await (const piece of volume.pack as AsyncIterable<Buffer>) {
      this.hasher!.update(piece);
      await writeFully(volume.handle, piece, volume.written);
      volume.written += piece.length;
      this.releaseDone(volume);
      // Start writing back early (one datasync at a time, not awaited): the device works
      // while we hash, and the datasync that closes the volume finds little left to do.
      if (volume.syncing === undefined && volume.written - volume.syncedAt >= backgroundSyncBytes) {
        volume.syncedAt = volume.written;
        volume.syncing = volume.handle.datasync().finally(() => (volume.syncing = undefined));
        volume.syncing.catch(() => {}); // the closing datasync reports trouble
      }
    }
    await volume.syncing?.catch(() => {});
  }

  /** Gives back the buffers of entries that are both in the file and hashed. */
  private releaseDone(volume: OpenVolume): void {
    const done = Math.min(volume.written, this.hasher!.hashedBytes);
    while (volume.releases.length > 0 && volume.releases[0]!.end <= done) volume.releases.shift()!.release();
  }

  private async closeCurrent(): Promise<void> {
    const volume = this.current!;
    this.current = undefined;
    volume.pack.finalize();
    let sha256: string;
    try {
      await volume.pump;
      [sha256] = await Promise.all([this.hasher!.digest(), volume.handle.datasync()]);
    } finally {
      await volume.handle.close();
    }
    if (volume.written !== volume.plannedBytes + endOfArchiveBytes) {
      throw new FerryError('internal', `volume ${volume.name}: wrote ${volume.written} bytes, expected ${volume.plannedBytes + endOfArchiveBytes}`);
    }
    const final = join(this.options.dir, volume.name);
    await rename(volume.path, final);
    await fsyncDirectory(this.options.dir);
    await this.options.onVolumeClosed({ name: volume.name, sizeBytes: volume.written, sha256, chunks: volume.chunks });
  }
}

/** Removes a volume left `.partial` (or a later one) by an interrupted export. */
export async function removeVolume(dir: string, name: string): Promise<void> {
  await rm(join(dir, name), { force: true });
  await rm(join(dir, `${name}.partial`), { force: true });
}
