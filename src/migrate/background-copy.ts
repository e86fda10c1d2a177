/**
 * Background copy: a disk, chunk by chunk, into a repository. All-zero chunks are skipped,
 * chunks are named by SHA-256, chunks the store already holds are not uploaded again (a
 * second VM from the same template costs almost nothing, and an interrupted copy re-run
 * continues where it stopped), uploads run with bounded concurrency under the link's rate
 * budget, and the manifest, the commit point, is written last.
 *
 * Memory is bounded: at most `concurrency` uploads run and `concurrency` more wait, each
 * holding one chunk, whatever the disk's size.
 */
import PQueue from 'p-queue';
import { FerryError, isAllZero, sha256Hex, throwIfAborted, type BlockDevice } from '../core/index.js';
import { chunkCount, type Manifest, type Repository } from '../store/index.js';
import { ProgressMeter, everyMs, type Progress } from './progress.js';
import type { Throttle } from './throttle.js';

export interface CopyOptions {
  repo: Repository;
  disk: BlockDevice;
  /** Name recorded in the manifest, e.g. `web-1/disk0`. */
  diskName: string;
  /** Defaults to the repository's chunk size. */
  chunkSizeBytes?: number;
  /** Uploads in flight at once (default 8). */
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
  const progress = (final = false) => report({ ...meter.snapshot(), stats: { ...stats, elapsedMs: meter.snapshot().elapsedMs } }, final);

  const queue = new PQueue({ concurrency });
  const seen = new Map<string, Promise<void>>();
  const chunks: Array<[number, string]> = [];
  let failure: unknown;
  queue.on('error', (err) => (failure ??= err));

  const upload = async (hash: string, data: Buffer) => {
    if (await repo.hasChunk(hash, signal)) {
      stats.chunksDeduplicated++;
      return;
    }
    await options.throttle?.take(data.byteLength, 'background', signal);
    await repo.putChunk(hash, data, signal);
    stats.chunksUploaded++;
    stats.bytesUploaded += data.byteLength;
  };

  for (let index = 0; index < total; index++) {
    throwIfAborted(signal);
    if (failure) break;
    const offset = index * chunkSizeBytes;
    const data = Buffer.allocUnsafe(Math.min(chunkSizeBytes, disk.sizeBytes - offset));
    await disk.read(data, offset);
    if (isAllZero(data)) {
      stats.chunksZero++;
    } else {
      const hash = sha256Hex(data);
      chunks.push([index, hash]);
      if (seen.has(hash)) {
        stats.chunksDeduplicated++;
      } else {
        const task = queue.add(() => upload(hash, data));
        // A failure is collected by the queue's error event; this promise must not reject unhandled.
        seen.set(hash, task.catch(() => {}));
      }
    }
    meter.add(data.byteLength);
    progress();
    await queue.onSizeLessThan(concurrency);
  }
  await queue.onIdle();
  if (failure) throw failure;
  throwIfAborted(signal);

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
