/**
 * A bounded pool of same-size buffers for reuse. Fresh memory costs a page fault per 4 KiB
 * the first time it is touched, several times the cost of copying into it, so a hot path
 * that fills buffers over and over hands them back and takes them again. `take` allocates when none is free; `give` keeps at most `maxFree`, leaving the
 * rest to the garbage collector.
 *
 * A buffer is given back only once nothing can still read or write it: the pool does not
 * know who holds a buffer.
 */
export class BufferPool {
  private readonly free: Buffer[] = [];

  constructor(
    readonly bufferBytes: number,
    /** Buffers kept for reuse at most. */
    readonly maxFree: number,
    /** Buffers in shared memory, which worker threads read in place (see hash-worker.ts). */
    private readonly options: { shared?: boolean } = {},
  ) {}

  take(): Buffer {
    return this.free.pop() ?? (this.options.shared ? Buffer.from(new SharedArrayBuffer(this.bufferBytes)) : Buffer.allocUnsafe(this.bufferBytes));
  }

  /** Keeps `buf` for reuse if it is one of this pool's size and there is room. */
  give(buf: Buffer): void {
    if (buf.length === this.bufferBytes && this.free.length < this.maxFree) this.free.push(buf);
  }
}
