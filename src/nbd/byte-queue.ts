/**
 * The bytes received on a socket and not yet parsed: a list of the chunks Node handed us.
 * Taking bytes returns views of those chunks (no copy) where it can: one view for bytes inside
 * one chunk, one per chunk for a WRITE's payload (`takePieces`); `take` copies bytes that span
 * chunks.
 */
export class ByteQueue {
  private chunks: Buffer[] = [];
  /** How far into chunks[0] has been consumed. */
  private offset = 0;
  /** Unconsumed bytes in all chunks. */
  length = 0;

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.length += chunk.length;
  }

  /**
   * Consumes `n` bytes (n <= length) and returns them. The result is a view into a received
   * chunk when possible, so callers must not keep it beyond the request it belongs to if
   * memory matters, and must not write into it.
   */
  take(n: number): Buffer {
    const first = this.chunks[0];
    if (first !== undefined && first.length - this.offset >= n) {
      const view = first.subarray(this.offset, this.offset + n);
      this.advance(n);
      return view;
    }
    const out = Buffer.allocUnsafe(n);
    this.copyInto(out, 0, n);
    return out;
  }

  /** Received chunks holding unconsumed bytes. */
  get chunkCount(): number {
    return this.chunks.length;
  }

  /**
   * Consumes `n` bytes (n <= length) as views of the chunks they lie in, in order: one view
   * when they lie in one chunk. The same caveats as `take` apply.
   */
  takePieces(n: number): Buffer | Buffer[] {
    const first = this.chunks[0];
    if (first !== undefined && first.length - this.offset >= n) return this.take(n);
    const pieces: Buffer[] = [];
    while (n > 0) {
      const chunk = this.chunks[0]!;
      const count = Math.min(n, chunk.length - this.offset);
      pieces.push(chunk.subarray(this.offset, this.offset + count));
      this.advance(count);
      n -= count;
    }
    return pieces;
  }

  /** Where the bytes `peek` returned start in its result. */
  peekOffset = 0;
  private readonly scratch = Buffer.allocUnsafe(64);

  /**
   * The next `n` bytes (n <= length, n <= 64) without consuming them: the buffer holding
   * them, at `peekOffset`. That is the received chunk itself when they lie in one, so parsing
   * a request header allocates nothing; otherwise a scratch copy, valid until the next peek.
   */
  peek(n: number): Buffer {
    const first = this.chunks[0]!;
    if (first.length - this.offset >= n) {
      this.peekOffset = this.offset;
      return first;
    }
    let copied = 0;
    let offset = this.offset;
    for (let i = 0; copied < n; i++) {
      const chunk = this.chunks[i]!;
      const count = Math.min(n - copied, chunk.length - offset);
      chunk.copy(this.scratch, copied, offset, offset + count);
      copied += count;
      offset = 0;
    }
    this.peekOffset = 0;
    return this.scratch;
  }

  /** Consumes up to `n` bytes into `target` at `at`; returns how many were copied. */
  copyInto(target: Buffer, at: number, n: number): number {
    let copied = 0;
    while (copied < n && this.length > 0) {
      const first = this.chunks[0]!;
      const count = Math.min(n - copied, first.length - this.offset);
      first.copy(target, at + copied, this.offset, this.offset + count);
      copied += count;
      this.advance(count);
    }
    return copied;
  }

  /** Drops up to `n` bytes; returns how many were dropped. */
  skip(n: number): number {
    let skipped = 0;
    while (skipped < n && this.length > 0) {
      const first = this.chunks[0]!;
      const count = Math.min(n - skipped, first.length - this.offset);
      skipped += count;
      this.advance(count);
    }
    return skipped;
  }

  clear(): void {
    this.chunks = [];
    this.offset = 0;
    this.length = 0;
  }

  private advance(n: number): void {
    this.length -= n;
    this.offset += n;
    const first = this.chunks[0];
    if (first !== undefined && this.offset === first.length) {
      this.chunks.shift();
      this.offset = 0;
    }
  }
}
