/**
 * The chunks of one or more disks, in order, for a job that stores them by content (a
 * background copy, a seed export): each chunk is read, checked for zeros and, unless all
 * zero, hashed (SHA-256 on worker threads), while the consumer works on earlier ones.
 *
 * Chunks live in a fixed pool of `buffers` buffers of shared memory (the hash workers read
 * them where they are). A read starts as soon as a buffer is free; the consumer gives a
 * chunk's buffer back with `release()` once it no longer needs the bytes, which may be after
 * it has taken later chunks (an upload that still holds them). Memory is `buffers` chunks
 * whatever the disks' sizes, and no buffer is allocated per chunk.
 */
import type { BlockDevice } from './block-device.js';
import { isAllZero } from './bytes.js';
import { badInput, throwIfAborted } from './errors.js';
import { ChunkHasher } from './hash-worker.js';

export interface ReadChunksOptions {
  /** Read one after another, as one sequence of chunks. */
  disks: readonly BlockDevice[];
  chunkSizeBytes: number;
  /** The first chunk to read: a disk (index in `disks`) and a chunk of it; default the very first. */
  from?: { disk: number; chunk: number };
  /** Chunk buffers: chunks being read or hashed, ready to be taken, or still held by the consumer. */
  buffers: number;
  /** Worker threads hashing chunks (default 1). */
  hashWorkers?: number;
  signal?: AbortSignal;
  /** The error to throw for a failed read (default: the read's own). */
  readError?: (err: unknown, disk: number, offset: number) => unknown;
}

interface ChunkPlace {
  /** Index of the chunk's disk in `disks`. */
  disk: number;
  /** Index of the chunk in its disk. */
  index: number;
  /** Byte offset of the chunk in its disk. */
  offset: number;
  /** The chunk's bytes (the last chunk of a disk may be short); valid until `release()`. */
  data: Buffer;
  /** Gives the chunk's buffer back to the pool; later calls do nothing. */
  release: () => void;
}

export type DiskChunk = ChunkPlace & ({ zero: true; sha256: undefined } | { zero: false; sha256: string });

/**
 * Yields every chunk from `from` on, in disk and chunk order. Ending the iteration early (a
 * `break`, an error) waits for the reads and hashes under way before it returns.
 */
export async function* readChunks(options: ReadChunksOptions): AsyncGenerator<DiskChunk, void, undefined> {
  const { disks, chunkSizeBytes, signal, readError } = options;
  if (!Number.isSafeInteger(options.buffers) || options.buffers < 1) throw badInput('buffers', options.buffers, 'a whole number of at least 1');
  if (!Number.isSafeInteger(chunkSizeBytes) || chunkSizeBytes < 1) throw badInput('chunkSizeBytes', chunkSizeBytes, 'a whole number of bytes');
  const counts = disks.map((d) => Math.ceil(d.sizeBytes / chunkSizeBytes));
  const free: Buffer[] = Array.from({ length: options.buffers }, () => Buffer.from(new SharedArrayBuffer(chunkSizeBytes)));
  const hasher = new ChunkHasher(options.hashWorkers);
  type Ahead = { disk: number; index: number; offset: number; buffer: Buffer; data: Buffer; sha256: Promise<string | undefined> };
  const ahead: Ahead[] = [];
  let next = { ...(options.from ?? { disk: 0, chunk: 0 }) };
  let closed = false;
  let wake: (() => void) | undefined;

  const skipPastEnds = () => {
    while (next.disk < disks.length && next.chunk >= counts[next.disk]!) next = { disk: next.disk + 1, chunk: 0 };
  };
  const fill = () => {
    skipPastEnds();
    while (!closed && free.length > 0 && next.disk < disks.length) {
      const { disk, chunk: index } = next;
      const device = disks[disk]!;
      const buffer = free.pop()!;
      const offset = index * chunkSizeBytes;
      const data = buffer.subarray(0, Math.min(chunkSizeBytes, device.sizeBytes - offset));
      const sha256 = device.read(data, offset).then(
        () => (isAllZero(data) ? undefined : hasher.hash(data)),
        (err: unknown) => {
          throw readError ? readError(err, disk, offset) : err;
        },
      );
      sha256.catch(() => {}); // awaited in order, or settled on the way out
      ahead.push({ disk, index, offset, buffer, data, sha256 });
      next = { disk, chunk: index + 1 };
      skipPastEnds();
    }
  };
  const giveBack = (buffer: Buffer) => {
    free.push(buffer);
    fill();
    const w = wake;
    wake = undefined;
    w?.();
  };

  try {
    fill();
    for (;;) {
      throwIfAborted(signal);
      const item = ahead.shift();
      if (!item) {
        if (next.disk >= disks.length) return;
        await new Promise<void>((resolve) => (wake = resolve)); // every buffer is with the consumer
        continue;
      }
      const sha256 = await item.sha256;
      let held = true;
      const release = () => {
        if (!held) return;
        held = false;
        giveBack(item.buffer);
      };
      const place = { disk: item.disk, index: item.index, offset: item.offset, data: item.data, release };
      yield sha256 === undefined ? { ...place, zero: true, sha256 } : { ...place, zero: false, sha256 };
    }
  } finally {
    closed = true;
    await Promise.allSettled(ahead.map((a) => a.sha256));
    await hasher.close();
  }
}
