/**
 * Where small file IO runs: inline on the event loop, or on libuv's threadpool.
 *
 * A 4 KiB pread or pwrite that the page cache serves takes 2-3 µs. Handing it to the
 * threadpool costs about 20 µs of CPU around it (a worker's futex wake-up, the event loop's
 * async handle, an epoll round), several times the syscall itself: at 4 KiB that is most of
 * an NBD request's cost. So small IO runs inline while it stays fast. When an inline call is
 * slow (a page-cache miss down to real media, the kernel throttling a writer of dirty pages),
 * the event loop was blocked meanwhile and other requests could not overlap with it: IO then
 * goes to the threadpool for a while (where it can overlap) before inline is tried again.
 * So a blocked loop costs at most one slow call per `threadpoolMs`.
 *
 * One policy per file (or per group of files on the same storage): slowness is a property of
 * the storage underneath.
 */

export interface InlineIoOptions {
  /** Calls of more bytes always use the threadpool (the hop is cheap next to the copy). Default 128 KiB. */
  maxInlineBytes?: number;
  /** An inline call that took longer than this sends IO to the threadpool. Default 1 ms. */
  slowCallMs?: number;
  /** How long IO stays on the threadpool after a slow inline call. Default 1 s. */
  threadpoolMs?: number;
}

export class InlineIo {
  private readonly maxInlineBytes: number;
  private readonly slowCallMs: number;
  private readonly threadpoolMs: number;
  /** performance.now() until which IO uses the threadpool; 0 when inline is allowed. */
  private threadpoolUntil = 0;
  private slowCalls = 0;

  constructor(options: InlineIoOptions = {}) {
    this.maxInlineBytes = options.maxInlineBytes ?? 128 * 1024;
    this.slowCallMs = options.slowCallMs ?? 1;
    this.threadpoolMs = options.threadpoolMs ?? 1000;
  }

  /** Inline calls that were slow so far (each sent IO to the threadpool for a while). */
  get slowInlineCalls(): number {
    return this.slowCalls;
  }

  /**
   * Runs `call` inline and returns its result if a call of `bytes` may run inline now;
   * otherwise returns `undefined` without calling it (the caller uses the threadpool).
   * Errors thrown by `call` propagate.
   */
  tryInline<T>(bytes: number, call: () => T): T | undefined {
    if (bytes > this.maxInlineBytes) return undefined;
    const until = this.threadpoolUntil;
    if (until !== 0) {
      if (performance.now() < until) return undefined;
      this.threadpoolUntil = 0;
    }
    const started = performance.now();
    try {
      return call();
    } finally {
      const now = performance.now();
      if (now - started > this.slowCallMs) {
        this.slowCalls++;
        this.threadpoolUntil = now + this.threadpoolMs;
      }
    }
  }
}
