/**
 * Seed export: the disks' data onto a portable device, as tar volumes of chunks named by
 * the store's own keys, then `seed.json`, written last.
 *
 * The disks may be in use: the caller starts capture before calling (for a live disk,
 * src/migrate/seed-source.ts parks its tracker in bitmap mode and gives its epoch here), so
 * every write after the epoch reaches the destination later, as a resync.
 *
 * Chunks are read in order with a few reads ahead, into a fixed pool of buffers; all-zero
 * chunks are skipped, a chunk that repeats is stored once, and a stored chunk's buffer goes
 * back to the pool once its bytes are in the volume file. Memory is `readAhead` chunks (plus
 * one sealed chunk when encrypting) whatever the disks' sizes.
 *
 * Resumable: after each volume is closed (synced, renamed to its final name) a line is
 * appended to `seed-progress.jsonl` (synced): the volume, how far the disks have been read,
 * and the chunks read since the previous line. A re-run finds the file, checks that it is
 * the same seed (same disks; a different seed on the device is a conflict), drops any volume
 * after the last recorded one and continues from there, with the seed's first epochs.
 */
import { open, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { hostname as osHostname } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { checkReplicationId, FerryError, fsyncDirectory, ProgressMeter, readChunks, writeFileAtomic, type BlockDevice, type Progress, makeDirectory } from '../core/index.js';
import { checkDiskId, chunkKey, defaultChunkSizeBytes, manifestVersion, type Manifest } from '../store/index.js';
import {
  decodeSeedManifest,
  encodeSeedManifest,
  manifestIdOf,
  seedManifestFile,
  seedProgressFile,
  seedVersion,
  volumeIndex,
  type SeedEncryption,
  type SeedManifest,
  type SeedVolumeEntry,
} from './device-manifest.js';
import { ChunkCipher, type SeedKey } from './seed-crypto.js';
import { VolumeSeries, removeVolume } from './volume-writer.js';

export const defaultVolumeSizeBytes = 1024 ** 3;

export interface SeedDisk {
  /** The disk's id: names its deltas in the store (letters, digits, `.`, `_`, `-`). */
  id: string;
  device: BlockDevice;
  /** Journal seq at which capture of this disk began (0 for a disk that is not in use). */
  epoch: number;
  /** The replication `epoch` counts in (absent for a disk that is not in use). */
  replication?: string;
  /** Name recorded in the disk's manifest (default: the id). */
  name?: string;
}

export interface ExportSeedOptions {
  deviceDir: string;
  disks: SeedDisk[];
  chunkSizeBytes?: number;
  volumeSizeBytes?: number;
  /** Encrypt chunks (AES-256-GCM) with a key from this key file or passphrase. */
  key?: SeedKey;
  /** Continue only this seed; a device holding another one is a conflict. */
  seedId?: string;
  /** Chunk buffers: reads ahead of the chunk being written (default 8). */
  readAhead?: number;
  ferryVersion?: string;
  hostname?: string;
  signal?: AbortSignal;
  onProgress?: (progress: Progress) => void;
  progressIntervalMs?: number;
}

export interface ExportSeedStats {
  bytesTotal: number;
  /** Bytes of the disks read by this run (a resumed run skips what was done). */
  bytesRead: number;
  chunksZero: number;
  chunksStored: number;
  chunksDeduplicated: number;
  /** Bytes written to volumes by this run. */
  volumeBytesWritten: number;
  volumes: number;
  elapsedMs: number;
}

export interface ExportSeedResult {
  manifest: SeedManifest;
  /** This run continued an interrupted export. */
  resumed: boolean;
  /** The device already held this seed, complete: nothing was done. */
  alreadyComplete: boolean;
  stats: ExportSeedStats;
}

interface StartLine {
  type: 'start';
  version: typeof seedVersion;
  seedId: string;
  startedAt: string;
  hostname: string;
  ferryVersion: string;
  chunkSizeBytes: number;
  volumeSizeBytes: number;
  encryption: SeedEncryption | null;
  disks: Array<{ id: string; name: string; sizeBytes: number; epoch: number; replication?: string }>;
}

interface VolumeLine {
  type: 'volume';
  volume: SeedVolumeEntry;
  /** The next chunk to read: disk (index in `disks`) and chunk index. */
  next: { disk: number; chunk: number };
  /** Non-zero chunks read since the previous line: [disk, chunk index, sha256]. */
  chunks: Array<[number, number, string]>;
}

export async function exportSeed(options: ExportSeedOptions): Promise<ExportSeedResult> {
  const { deviceDir, signal } = options;
  const chunkSizeBytes = options.chunkSizeBytes ?? defaultChunkSizeBytes;
  if (!Number.isSafeInteger(chunkSizeBytes) || chunkSizeBytes < 4096 || chunkSizeBytes % 4096 !== 0) {
    throw new FerryError('bad-input', `chunk size: expected a multiple of 4 KiB, received ${chunkSizeBytes}`);
  }
  if (options.disks.length === 0) throw new FerryError('bad-input', 'disks: expected at least one disk, received none');
  const ids = new Set<string>();
  for (const disk of options.disks) {
    checkDiskId(disk.id);
    if (ids.has(disk.id)) throw new FerryError('bad-input', `disk id ${JSON.stringify(disk.id)} is given twice`);
    ids.add(disk.id);
    if (!Number.isSafeInteger(disk.epoch) || disk.epoch < 0) throw new FerryError('bad-input', `disk ${disk.id}: epoch: expected a seq >= 0, received ${disk.epoch}`);
    if (disk.replication !== undefined) checkReplicationId(disk.replication, `disk ${disk.id}: replication`);
  }
  await makeDirectory(deviceDir);
  const manifestPath = join(deviceDir, seedManifestFile);
  const progressPath = join(deviceDir, seedProgressFile);

  // A complete seed on the device: the same one is done; another one is a conflict.
  const existing = await readFile(manifestPath).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw new FerryError('io', `${manifestPath}: ${err.message}`, { cause: err });
  });
  if (existing) {
    const manifest = decodeSeedManifest(existing, manifestPath);
    // Done already only if the caller names this very seed: same disk ids prove nothing.
    const same = sameDisks(manifest.disks.map((d) => ({ id: d.id, sizeBytes: d.manifest.disk.sizeBytes })), options.disks);
    if (options.seedId !== manifest.seedId || !same) {
      throw new FerryError('conflict', `${deviceDir} already holds seed ${manifest.seedId} (complete, disks ${manifest.disks.map((d) => d.id).join(', ')}): refusing to overwrite it; use an empty directory`);
    }
    const stats = emptyStats(0);
    return { manifest, resumed: false, alreadyComplete: true, stats };
  }

  // An unfinished export: continue it if it is this seed.
  const lines = await readProgress(progressPath);
  let start: StartLine;
  let cipher: ChunkCipher | undefined;
  const done: VolumeLine[] = [];
  if (lines) {
    start = lines.start;
    if ((options.seedId && options.seedId !== start.seedId) || !sameDisks(start.disks, options.disks) || start.chunkSizeBytes !== chunkSizeBytes) {
      throw new FerryError(
        'conflict',
        `${deviceDir} holds an unfinished export of another seed (${start.seedId}, disks ${start.disks.map((d) => `${d.id}:${d.sizeBytes}`).join(', ')}, chunk size ${start.chunkSizeBytes}): refusing to overwrite it; use an empty directory`,
      );
    }
    if (start.encryption && !options.key) throw new FerryError('bad-input', `seed ${start.seedId} on ${deviceDir} is encrypted: give its key to continue`);
    if (!start.encryption && options.key) throw new FerryError('bad-input', `seed ${start.seedId} on ${deviceDir} was started without encryption: continue it without a key`);
    if (start.encryption) cipher = ChunkCipher.open(options.key!, start.encryption, `seed ${start.seedId}`);
    done.push(...lines.volumes);
    for (const line of done) {
      const info = await stat(join(deviceDir, line.volume.name)).catch(() => undefined);
      if (!info || info.size !== line.volume.sizeBytes) {
        throw new FerryError(
          'checksum-mismatch',
          `volume ${line.volume.name} on ${deviceDir} is recorded complete (${line.volume.sizeBytes} bytes) but is ${info ? `${info.size} bytes` : 'missing'}: the device was changed; start again in an empty directory`,
        );
      }
    }
  } else {
    const leftovers = (await readdir(deviceDir)).filter((n) => volumeIndex(n.replace(/\.partial$/, '')) !== undefined);
    if (leftovers.length > 0) throw new FerryError('conflict', `${deviceDir} holds volumes (${leftovers[0]}, ...) of an unknown seed and no ${seedProgressFile}: use an empty directory`);
    let encryption: SeedEncryption | null = null;
    if (options.key) ({ cipher, encryption } = ChunkCipher.create(options.key));
    start = {
      type: 'start',
      version: seedVersion,
      seedId: options.seedId ?? randomBytes(16).toString('hex'),
      startedAt: new Date().toISOString(),
      hostname: options.hostname ?? osHostname(),
      ferryVersion: options.ferryVersion ?? 'unknown',
      chunkSizeBytes,
      volumeSizeBytes: options.volumeSizeBytes ?? defaultVolumeSizeBytes,
      encryption,
      disks: options.disks.map((d) => ({ id: d.id, name: d.name ?? d.id, sizeBytes: d.device.sizeBytes, epoch: d.epoch, ...(d.replication ? { replication: d.replication } : {}) })),
    };
    await writeFile(progressPath, `${JSON.stringify(start)}\n`, { flush: true, mode: 0o600 });
    await fsyncDirectory(deviceDir);
  }
  // Volumes after the last complete one were being written when the export stopped.
  for (const name of await readdir(deviceDir)) {
    const index = volumeIndex(name.replace(/\.partial$/, ''));
    if (index !== undefined && (index >= done.length || name.endsWith('.partial'))) await removeVolume(deviceDir, name.replace(/\.partial$/, ''));
  }

  // State rebuilt from the checkpoint lines.
  const chunkLists: Array<Array<[number, string]>> = options.disks.map(() => []);
  const stored = new Set<string>();
  for (const line of done) {
    for (const [d, index, hash] of line.chunks) {
      chunkLists[d]!.push([index, hash]);
      stored.add(hash);
    }
  }
  const volumes = done.map((l) => l.volume);
  let position = done.length > 0 ? { ...done[done.length - 1]!.next } : { disk: 0, chunk: 0 };
  let pending: Array<[number, number, string]> = [];
  const bytesTotal = options.disks.reduce((sum, d) => sum + d.device.sizeBytes, 0);
  const bytesBefore = options.disks.reduce((sum, d, i) => sum + (i < position.disk ? d.device.sizeBytes : i === position.disk ? Math.min(d.device.sizeBytes, position.chunk * chunkSizeBytes) : 0), 0);
  const meter = new ProgressMeter(bytesTotal, { done: bytesBefore, onProgress: options.onProgress, intervalMs: options.progressIntervalMs });
  const stats = emptyStats(bytesTotal);

  const progressFile = await open(progressPath, 'a');
  const series = new VolumeSeries({
    dir: deviceDir,
    seedId: start.seedId,
    volumeSizeBytes: start.volumeSizeBytes,
    firstIndex: done.length,
    mtime: new Date(start.startedAt),
    onVolumeClosed: async (volume) => {
      const line: VolumeLine = { type: 'volume', volume, next: position, chunks: pending };
      await progressFile.write(`${JSON.stringify(line)}\n`);
      await progressFile.datasync();
      volumes.push(volume);
      stats.volumes++;
      stats.volumeBytesWritten += volume.sizeBytes;
      pending = [];
    },
  });

  // Chunks are read, checked for zeros and hashed ahead of this loop, in disk and chunk
  // order, into a fixed pool of shared buffers (the volume's hasher reads them where they
  // are too); the main thread stays free to keep the device busy.
  const chunks = readChunks({
    disks: options.disks.map((d) => d.device),
    chunkSizeBytes,
    from: position,
    buffers: Math.max(1, options.readAhead ?? 8),
    signal,
    readError: (err, disk, offset) => new FerryError('io', `reading disk ${options.disks[disk]!.id} at ${offset} failed: ${(err as Error).message}`, { cause: err }),
  });
  try {
    for await (const chunk of chunks) {
      position = { disk: chunk.disk, chunk: chunk.index };
      if (chunk.zero) {
        stats.chunksZero++;
        chunk.release();
      } else {
        const hash = chunk.sha256;
        if (stored.has(hash)) {
          stats.chunksDeduplicated++;
          chunk.release();
        } else {
          stored.add(hash);
          const name = chunkKey(hash);
          if (cipher) {
            const sealed = cipher.seal(name, chunk.data);
            chunk.release();
            await series.add(name, sealed, () => {});
          } else {
            await series.add(name, chunk.data, chunk.release);
          }
          stats.chunksStored++;
        }
        // Recorded after `add`: a checkpoint taken while adding covers the chunks before it.
        pending.push([chunk.disk, chunk.index, hash]);
        chunkLists[chunk.disk]!.push([chunk.index, hash]);
      }
      position = { disk: chunk.disk, chunk: chunk.index + 1 };
      stats.bytesRead += chunk.data.byteLength;
      meter.add(chunk.data.byteLength);
    }
    position = { disk: options.disks.length, chunk: 0 };
    await series.finish();
  } catch (err) {
    await series.abandon();
    await progressFile.close();
    throw err;
  }
  await progressFile.close();

  const finishedAt = new Date().toISOString();
  const disks = options.disks.map((d, i) => {
    const recorded = start.disks[i]!;
    const manifest: Manifest = {
      format: 'ferry-manifest',
      version: manifestVersion,
      disk: { name: recorded.name, sizeBytes: recorded.sizeBytes },
      chunkSizeBytes,
      epoch: recorded.epoch,
      ...(recorded.replication ? { replication: recorded.replication } : {}),
      createdAt: finishedAt,
      chunks: chunkLists[i]!,
    };
    return { id: d.id, manifestId: manifestIdOf(manifest), manifest };
  });
  const bytes = encodeSeedManifest({
    format: 'ferry-seed',
    version: seedVersion,
    seedId: start.seedId,
    createdBy: { hostname: start.hostname, ferryVersion: start.ferryVersion },
    startedAt: start.startedAt,
    finishedAt,
    volumeSizeBytes: start.volumeSizeBytes,
    encryption: start.encryption,
    disks,
    volumes,
  }, cipher);
  await writeFileAtomic(manifestPath, bytes);
  await rm(progressPath, { force: true });
  await fsyncDirectory(deviceDir);
  stats.elapsedMs = meter.flush().elapsedMs;
  return { manifest: decodeSeedManifest(bytes, manifestPath), resumed: lines !== undefined, alreadyComplete: false, stats };
}

function emptyStats(bytesTotal: number): ExportSeedStats {
  return { bytesTotal, bytesRead: 0, chunksZero: 0, chunksStored: 0, chunksDeduplicated: 0, volumeBytesWritten: 0, volumes: 0, elapsedMs: 0 };
}

function sameDisks(recorded: Array<{ id: string; sizeBytes: number }>, given: SeedDisk[]): boolean {
  return recorded.length === given.length && recorded.every((d, i) => d.id === given[i]!.id && d.sizeBytes === given[i]!.device.sizeBytes);
}

/** The checkpoint lines; a torn last line (the export stopped while appending) is dropped. */
async function readProgress(path: string): Promise<{ start: StartLine; volumes: VolumeLine[] } | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new FerryError('io', `${path}: ${(err as Error).message}`, { cause: err });
  }
  const rows = text.split('\n');
  const parsed: unknown[] = [];
  rows.forEach((row, i) => {
    if (row === '') return;
    try {
      parsed.push(JSON.parse(row));
    } catch (err) {
      if (i < rows.length - 1 && rows.slice(i + 1).some((r) => r !== '')) {
        throw new FerryError('checksum-mismatch', `${path}: line ${i + 1} is damaged`, { cause: err });
      }
    }
  });
  const start = parsed[0] as StartLine | undefined;
  if (!start || start.type !== 'start') throw new FerryError('checksum-mismatch', `${path}: the first line is not the export's start`);
  if (start.version !== seedVersion) throw new FerryError('unsupported-version', `${path} has version ${JSON.stringify(start.version)}; this ferry reads ${seedVersion}`);
  const volumes = parsed.slice(1) as VolumeLine[];
  volumes.forEach((v, i) => {
    if (v.type !== 'volume' || volumeIndex(v.volume?.name ?? '') !== i) throw new FerryError('checksum-mismatch', `${path}: line ${i + 2} is not volume ${i}`);
  });
  return { start, volumes };
}
