/**
 * Background copy: a disk, chunk by chunk, into a repository. All-zero chunks are skipped,
 * chunks are named by SHA-256, chunks the store already holds are not uploaded again (a
 * second VM from the same template costs almost nothing, and an interrupted copy re-run
 * continues where it stopped), uploads run under the link's rate budget, and the manifest,
 * the commit point, is written last.
 *
 * Each chunk is one task (read, zero check, hash, look up, upload) and `concurrency` tasks
 * run at once, so the reads and uploads of some chunks overlap the hashing of others, which
 * runs on a worker thread (the buffers are shared with it, not copied). The tasks share a fixed pool of chunk buffers: memory is
 * `concurrency` chunks whatever the disk's size, and no garbage is made per chunk.
 */
import PQueue from 'p-queue';
import { ChunkHasher, FerryError, isAllZero, throwIfAborted, type BlockDevice, ProgressMeter, everyMs, type Progress } from '../core/index.js';
import { chunkCount, type Manifest, type Repository } from '../store/index.js';
import type { Throttle } from './throttle.js';

export interface CopyOptions {
  repo: Repository;
  disk: BlockDevice;
  /** Name recorded in the manifest, e.g. `web-1/disk0`. */
  diskName: string;
  /** Defaults to the repository's chunk size. */
  chunkSizeBytes?: number;
  /** Chunks in flight at once (read, hashed or uploaded); default 8. */
  concurrency?: number;
  throttle?: Throttle;
  /** Journal seq at which this copy began (DESIGN.md invariant 1); 0 without capture. */
  epoch?: number;
  signal?: AbortSignal;
  onProgress?: (progress: CopyProgress) => void;
  progressIntervalMs?: number;
}

export interface CopyStats {
  bytesTotal: number;
  chunksTotal: number;
  /** All-zero chunks: not stored. */
  chunksZero: number;
  /** Chunks uploaded by this copy. */
  chunksUploaded: number;
  bytesUploaded: number;
  /** Chunks the store already had, or that repeat within this disk. */
  chunksDeduplicated: number;
  elapsedMs: number;
}

export interface CopyProgress extends Progress {
  stats: CopyStats;
}

export interface CopyResult {
  manifestId: string;
  manifest: Manifest;
  stats: CopyStats;
}

export async function copyDisk(options: CopyOptions): Promise<CopyResult> {
  const { repo, disk, signal } = options;
  const chunkSizeBytes = options.chunkSizeBytes ?? repo.config.chunkSizeBytes;
  const concurrency = options.concurrency ?? 8;
  if (!Number.isSafeInteger(chunkSizeBytes) || chunkSizeBytes < 4096 || chunkSizeBytes % 4096 !== 0) {
    throw new FerryError('bad-input', `chunk size: expected a multiple of 4 KiB, received ${chunkSizeBytes}`);
  }
  const total = chunkCount({ disk: { name: options.diskName, sizeBytes: disk.sizeBytes }, chunkSizeBytes });
  const stats: CopyStats = {
    bytesTotal: disk.sizeBytes,
    chunksTotal: total,
    chunksZero: 0,
    chunksUploaded: 0,
    bytesUploaded: 0,
    chunksDeduplicated: 0,
    elapsedMs: 0,
  };
  const meter = new ProgressMeter(disk.sizeBytes);
  const report = everyMs(options.progressIntervalMs ?? 250, options.onProgress);
  const progress = (final = false) => {
    const snapshot = meter.snapshot();
    report({ ...snapshot, stats: { ...stats, elapsedMs: snapshot.elapsedMs } }, final);
  };

  // One buffer per task slot: a task takes one when it starts and gives it back when done.
  const buffers = Array.from({ length: concurrency }, () => Buffer.from(new SharedArrayBuffer(chunkSizeBytes)));
  const hasher = new ChunkHasher();
  /** Uploads of this copy by hash, so a chunk that repeats within the disk is stored once. */
  const uploads = new Map<string, Promise<void>>();
  const hashes: Array<string | undefined> = new Array(total);

  const copyChunk = async (index: number) => {
    const buffer = buffers.pop()!;
    try {
      const offset = index * chunkSizeBytes;
      const data = buffer.subarray(0, Math.min(chunkSizeBytes, disk.sizeBytes - offset));
      await disk.read(data, offset);
      if (isAllZero(data)) {
        stats.chunksZero++;
      } else {
        const hash = await hasher.hash(data);
        hashes[index] = hash;
        const earlier = uploads.get(hash);
        if (earlier) {
          await earlier;
          stats.chunksDeduplicated++;
        } else {
          const upload = uploadChunk(hash, data);
          uploads.set(hash, upload);
          await upload;
        }
      }
      meter.add(data.byteLength);
      progress();
    } finally {
      buffers.push(buffer);
    }
  };

  const uploadChunk = async (hash: string, data: Buffer) => {
    if (await repo.hasChunk(hash, signal)) {
      stats.chunksDeduplicated++;
      return;
    }
    await options.throttle?.take(data.byteLength, 'background', signal);
    await repo.putChunk(hash, data, signal);
    stats.chunksUploaded++;
    stats.bytesUploaded += data.byteLength;
  };

  const queue = new PQueue({ concurrency });
  let failure: unknown;
  try {
    for (let index = 0; index < total && failure === undefined; index++) {
      throwIfAborted(signal);
      queue.add(() => copyChunk(index)).catch((err: unknown) => (failure ??= err));
      await queue.onSizeLessThan(1); // start the next chunk only when a slot (and buffer) is free
    }
  } finally {
    await queue.onIdle(); // chunks under way finish (or fail) before their hasher goes
    await hasher.close();
  }
  if (failure !== undefined) throw failure;
  throwIfAborted(signal);

  const chunks: Array<[number, string]> = [];
  hashes.forEach((hash, index) => hash && chunks.push([index, hash]));
  const manifest: Manifest = {
    format: 'ferry-manifest',
    version: 1,
    disk: { name: options.diskName, sizeBytes: disk.sizeBytes },
    chunkSizeBytes,
    epoch: options.epoch ?? 0,
    createdAt: new Date().toISOString(),
    chunks,
  };
  const manifestId = await repo.putManifest(manifest, signal);
  stats.elapsedMs = meter.snapshot().elapsedMs;
  progress(true);
  return { manifestId, manifest, stats };
}
