/**
 * Where small file IO runs: inline on the event loop, or on libuv's threadpool.
 *
 * A 4 KiB pread or pwrite that the page cache serves is a few microseconds. Handing it to
 * the threadpool costs several times that in CPU around it (a worker's futex wake-up, the
 * event loop's async handle, an epoll round): at 4 KiB that is most of an NBD request's
 * cost. So small IO runs inline while it stays fast. When inline calls keep
 * being slow (page-cache misses down to real media, the kernel throttling a writer of dirty
 * pages), the event loop is blocked meanwhile and other requests cannot overlap with them: IO
 * then goes to the threadpool for a while (where it can overlap) before inline is tried again.
 * "Keep being slow" means slow calls held the loop for a good share of the last second, not
 * merely that a few were slow: one slow call in hundreds blocks little, and sending the
 * others to the threadpool for it would cost far more. One slow call alone never counts: on a
 * busy host the thread may simply have been descheduled in the middle of a fast one.
 *
 * One policy per file (or per group of files on the same storage): slowness is a property of
 * the storage underneath.
 */

export interface InlineIoOptions {
  /** Calls of more bytes always use the threadpool (the hop is cheap next to the copy). Default 128 KiB. */
  maxInlineBytes?: number;
  /** An inline call that took longer than this is slow. Default 1 ms. */
  slowCallMs?: number;
  /**
   * IO goes to the threadpool when, within `slowWindowMs`, at least `slowCallsToSwitch` inline
   * calls were slow and together held the event loop for `slowShareToSwitch` of that window.
   * Defaults: 4 calls, 1 s, a tenth. The share keeps a fast disk's rare slow call (now and
   * then a sync that takes milliseconds, among thousands of calls a second) from costing
   * every other call a threadpool hop.
   */
  slowCallsToSwitch?: number;
  slowWindowMs?: number;
  slowShareToSwitch?: number;
  /**
   * How long IO stays on the threadpool once switched. Default 1 s. 0 keeps small IO inline
   * always: for a caller that issues one IO at a time and has nothing to overlap with it.
   */
  threadpoolMs?: number;
}

/** A slow inline call: when it ended, and how long it held the event loop. */
interface SlowCall {
  endedAt: number;
  ms: number;
}

export class InlineIo {
  private readonly maxInlineBytes: number;
  private readonly slowCallMs: number;
  private readonly slowWindowMs: number;
  private readonly threadpoolMs: number;
  /** performance.now() until which IO uses the threadpool; 0 when inline is allowed. */
  private threadpoolUntil = 0;
  /** The slow calls within the last slowWindowMs, oldest first, and their total ms. */
  private readonly recentSlow: SlowCall[] = [];
  private recentSlowMs = 0;
  private readonly slowCallsToSwitch: number;
  private readonly slowMsToSwitch: number;
  private slowCalls = 0;

  constructor(options: InlineIoOptions = {}) {
    this.maxInlineBytes = options.maxInlineBytes ?? 128 * 1024;
    this.slowCallMs = options.slowCallMs ?? 1;
    this.slowCallsToSwitch = Math.max(1, options.slowCallsToSwitch ?? 4);
    this.slowWindowMs = options.slowWindowMs ?? 1000;
    this.slowMsToSwitch = this.slowWindowMs * (options.slowShareToSwitch ?? 0.1);
    this.threadpoolMs = options.threadpoolMs ?? 1000;
  }

  /** Inline calls that were slow so far. */
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
      if (now - started > this.slowCallMs) this.slow(now, now - started);
    }
  }

  private slow(now: number, ms: number): void {
    this.slowCalls++;
    if (this.threadpoolMs === 0) return; // inline always
    const recent = this.recentSlow;
    recent.push({ endedAt: now, ms });
    this.recentSlowMs += ms;
    while (now - recent[0]!.endedAt > this.slowWindowMs) this.recentSlowMs -= recent.shift()!.ms;
    if (recent.length >= this.slowCallsToSwitch && this.recentSlowMs >= this.slowMsToSwitch) {
      this.threadpoolUntil = now + this.threadpoolMs;
      recent.length = 0;
      this.recentSlowMs = 0;
    }
  }
}
