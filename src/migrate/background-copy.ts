/**
 * Background copy: a disk, chunk by chunk, into a repository. All-zero chunks are skipped,
 * chunks are named by SHA-256, chunks the store already holds are not uploaded again (a
 * second VM from the same template costs almost nothing, and an interrupted copy re-run
 * continues where it stopped), uploads run under the link's rate budget, and the manifest,
 * the commit point, is written last.
 *
 * The chunks are read, checked for zeros and hashed (on worker threads, one per core) into
 * `concurrency` chunk buffers, ahead of the uploads (src/core/chunker.ts): memory is
 * `concurrency` chunks whatever the disk's size. Each chunk is then one task (look up,
 * upload) that gives its buffer back as soon as the store has taken the bytes (a `file:`
 * store: once they are in the page cache), not when the upload settles, so the disk's syncs
 * of some chunks overlap the reading and hashing of the next ones; up to `4 * concurrency`
 * tasks are under way, the others waiting only for their syncs.
 */
import { availableParallelism } from 'node:os';
import { FerryError, ProgressMeter, forEachConcurrently, readChunks, throwIfAborted, type BlockDevice, type DiskChunk, type Progress } from '../core/index.js';
import { chunkCount, manifestVersion, type Manifest, type Repository } from '../store/index.js';
import type { Throttle } from './throttle.js';

export interface CopyOptions {
  repo: Repository;
  disk: BlockDevice;
  /** Name recorded in the manifest, e.g. `web-1/disk0`. */
  diskName: string;
  /** Defaults to the repository's chunk size. */
  chunkSizeBytes?: number;
  /**
   * Chunks read, hashed or uploaded at once, each holding a chunk buffer; default 8. Uploads
   * that have handed their bytes to the store and wait only for it to make them durable do
   * not count, up to 4 * concurrency chunks under way in all.
   */
  concurrency?: number;
  /** Worker threads hashing chunks; default one per core, at most 4. */
  hashWorkers?: number;
  throttle?: Throttle;
  /** Journal seq at which this copy began (docs/DESIGN.md invariant 1); 0 without capture. */
  epoch?: number;
  /** The replication `epoch` counts in, for a disk under capture. */
  replication?: string;
  /** For a disk under capture: the journal seq now, asked once every chunk was read (the manifest's consistentAt). */
  seqNow?: () => number;
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
  const { onProgress } = options;
  const meter = new ProgressMeter(disk.sizeBytes, {
    intervalMs: options.progressIntervalMs,
    onProgress: onProgress && ((p) => onProgress({ ...p, stats: { ...stats, elapsedMs: p.elapsedMs } })),
  });
  /** Uploads of this copy by hash, so a chunk that repeats within the disk is stored once. */
  const uploads = new Map<string, Promise<void>>();
  const hashes: Array<string | undefined> = new Array(total);

  const copyChunk = async (chunk: DiskChunk) => {
    try {
      if (chunk.zero) {
        stats.chunksZero++;
      } else {
        hashes[chunk.index] = chunk.sha256;
        const earlier = uploads.get(chunk.sha256);
        if (earlier) {
          chunk.release();
          await earlier;
          stats.chunksDeduplicated++;
        } else {
          const upload = uploadChunk(chunk.sha256, chunk.data, chunk.release);
          uploads.set(chunk.sha256, upload);
          await upload;
        }
      }
      meter.add(chunk.data.byteLength);
    } finally {
      chunk.release();
    }
  };

  const uploadChunk = async (hash: string, data: Buffer, release: () => void) => {
    if (await repo.hasChunk(hash, signal)) {
      stats.chunksDeduplicated++;
      return;
    }
    await options.throttle?.take(data.byteLength, 'background', signal);
    await repo.putChunk(hash, data, signal, { onDataReleased: release });
    stats.chunksUploaded++;
    stats.bytesUploaded += data.byteLength;
  };

  const hashWorkers = options.hashWorkers ?? Math.min(4, availableParallelism());
  await forEachConcurrently(readChunks({ disks: [disk], chunkSizeBytes, buffers: concurrency, hashWorkers, signal }), 4 * concurrency, copyChunk);
  throwIfAborted(signal);
  const consistentAt = options.seqNow?.();

  const chunks: Array<[number, string]> = [];
  hashes.forEach((hash, index) => hash && chunks.push([index, hash]));
  const manifest: Manifest = {
    format: 'ferry-manifest',
    version: manifestVersion,
    disk: { name: options.diskName, sizeBytes: disk.sizeBytes },
    chunkSizeBytes,
    epoch: options.epoch ?? 0,
    ...(options.replication ? { replication: options.replication } : {}),
    ...(consistentAt !== undefined ? { consistentAt } : {}),
    createdAt: new Date().toISOString(),
    chunks,
  };
  const manifestId = await repo.putManifest(manifest, signal);
  stats.elapsedMs = meter.flush().elapsedMs;
  return { manifestId, manifest, stats };
}
