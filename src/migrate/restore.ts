/**
 * Restore: rebuild a disk from a manifest. Every chunk is verified (SHA-256 against its
 * name, length against its place) before a byte of it is written, so nothing unverified
 * reaches the destination.
 *
 * A destination that does not exist is built as `<dest>.ferry-partial`, a sparse file in
 * which all-zero chunks stay holes, and renamed into place only when complete: an
 * interrupted restore never leaves a plausible-looking disk, and re-running it continues
 * the partial file. A destination that exists (a block device, or a replica being brought
 * up to date) must have exactly the manifest's size; chunks it already holds are not
 * written again.
 */
import { rename } from 'node:fs/promises';
import PQueue from 'p-queue';
import { availableParallelism } from 'node:os';
import { ChunkHasher, FerryError, FileDevice, forEachConcurrently, isAllZero, pathExists, type BlockDevice, ProgressMeter, type Progress } from '../core/index.js';
import { chunkKey, type Manifest, type Repository } from '../store/index.js';

export interface RestoreOptions {
  repo: Repository;
  manifestId: string;
  /** Path of the destination disk (file or block device). */
  destPath: string;
  /** Chunk downloads in flight at once (default 8). */
  concurrency?: number;
  signal?: AbortSignal;
  onProgress?: (progress: RestoreProgress) => void;
  progressIntervalMs?: number;
}

export interface RestoreStats {
  bytesTotal: number;
  chunksTotal: number;
  chunksWritten: number;
  /** Chunks the destination already held. */
  chunksUnchanged: number;
  /** All-zero chunks: left as holes, or zeroed where the destination held data. */
  chunksZero: number;
  bytesDownloaded: number;
  elapsedMs: number;
}

export interface RestoreProgress extends Progress {
  stats: RestoreStats;
}

export async function restoreDisk(options: RestoreOptions): Promise<{ manifestId: string; stats: RestoreStats }> {
  const { repo, destPath, signal } = options;
  const { id, manifest } = await repo.getManifest(options.manifestId, signal);
  const partialPath = `${destPath}.ferry-partial`;
  const fresh = !(await pathExists(destPath));
  // A file made now holds zeros only: nothing in it needs reading (a partial one left by an
  // earlier run does: it may hold chunks already).
  const created = fresh && !(await pathExists(partialPath));
  const device = await FileDevice.open(fresh ? partialPath : destPath, {
    expectSizeBytes: manifest.disk.sizeBytes,
    createSizeBytes: fresh ? manifest.disk.sizeBytes : undefined,
  }).catch((err: unknown) => {
    if (err instanceof FerryError && err.code === 'bad-input' && !fresh) {
      throw new FerryError('bad-input', `destination ${destPath}: ${err.message}; manifest ${id} describes a disk of ${manifest.disk.sizeBytes} bytes`);
    }
    throw err;
  });
  try {
    const stats = await writeChunks(repo, manifest, device, options, created);
    await device.flush();
    if (fresh) await rename(partialPath, destPath);
    return { manifestId: id, stats };
  } finally {
    await device.close();
  }
}

async function writeChunks(repo: Repository, manifest: Manifest, device: BlockDevice, options: RestoreOptions, allZero: boolean): Promise<RestoreStats> {
  const { signal } = options;
  const chunkSize = manifest.chunkSizeBytes;
  const total = Math.ceil(manifest.disk.sizeBytes / chunkSize);
  const stats: RestoreStats = {
    bytesTotal: manifest.disk.sizeBytes,
    chunksTotal: total,
    chunksWritten: 0,
    chunksUnchanged: 0,
    chunksZero: 0,
    bytesDownloaded: 0,
    elapsedMs: 0,
  };
  const { onProgress } = options;
  const meter = new ProgressMeter(manifest.disk.sizeBytes, {
    intervalMs: options.progressIntervalMs,
    onProgress: onProgress && ((p) => onProgress({ ...p, stats: { ...stats, elapsedMs: p.elapsedMs } })),
  });
  const hashes = new Map(manifest.chunks);
  const concurrency = options.concurrency ?? 8;

  // One buffer per task slot, for what the destination holds now and then for the chunk
  // downloaded: no garbage per chunk, and shared memory that the hash workers read in place.
  const buffers = Array.from({ length: concurrency }, () => Buffer.from(new SharedArrayBuffer(chunkSize)));
  const hasher = new ChunkHasher(Math.min(4, availableParallelism()));
  // Downloads overlap, writes go one at a time: buffered writes to one file each take its
  // lock, and writers that contend for it are several times slower than the same writes in turn.
  const writes = new PQueue({ concurrency: 1 });
  const restoreChunk = async (index: number) => {
    const offset = index * chunkSize;
    const length = Math.min(chunkSize, manifest.disk.sizeBytes - offset);
    const hash = hashes.get(index);
    const buffer = buffers.pop()!;
    try {
      // What the destination holds decides what must be written: it may already be right.
      const current = buffer.subarray(0, length);
      let currentZero = true;
      if (!allZero) {
        await device.read(current, offset);
        currentZero = isAllZero(current);
      }
      if (hash === undefined) {
        stats.chunksZero++;
        if (!currentZero) await writes.add(() => device.writeZeroes(offset, length));
      } else if (!currentZero && (await hasher.hash(current)) === hash) {
        stats.chunksUnchanged++;
      } else {
        const data = await repo.getChunk(hash, signal, { into: buffer, hasher });
        stats.bytesDownloaded += data.byteLength;
        if (data.byteLength !== length) {
          throw new FerryError('checksum-mismatch', `chunk ${chunkKey(hash)} is ${data.byteLength} bytes but chunk ${index} of the manifest needs ${length}`);
        }
        await writes.add(() => device.write(data, offset));
        stats.chunksWritten++;
      }
    } finally {
      buffers.push(buffer);
    }
    meter.add(length);
  };

  try {
    await forEachConcurrently(chunkIndices(total), concurrency, restoreChunk, signal);
  } finally {
    await hasher.close();
  }
  stats.elapsedMs = meter.flush().elapsedMs;
  return stats;
}

function* chunkIndices(total: number): Generator<number> {
  for (let index = 0; index < total; index++) yield index;
}
