/**
 * Write backpressure (docs/DESIGN.md, "Throttles and backpressure"): when the journal holds more
 * unshipped bytes than the high-water mark, the capture filter delays acknowledging each
 * write, in proportion to how far above the mark the journal is:
 *
 *   u = unshipped journal bytes, H = highWaterBytes, L = hardLimitBytes, D = maxDelayMs
 *   delayMs(u) = 0                              if u <= H
 *              = D * min(1, (u - H) / (L - H))  otherwise
 *
 * Why this converges: a VM keeps a bounded number of writes in flight, so its write rate is
 * about (bytes in flight) / (latency + delay). While it writes faster than the link drains,
 * u rises, the delay rises with it, and its rate falls, until the rate meets the drain rate
 * at some u between H and L: the journal stops growing there. If even D is not enough, u
 * reaches L and the tracker falls back to the bitmap (no write ever fails).
 *
 * Settings change at run time (`update`); the hard limit is the journal's own, so there is
 * one source of truth for it.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { badInput } from '../core/index.js';

export interface BackpressureSettings {
  highWaterBytes: number;
  hardLimitBytes: number;
  maxDelayMs: number;
}

/** What backpressure watches and steers: the change tracker (or the journal) fits. */
export interface BackpressureSource {
  readonly unshippedBytes: number;
  hardLimitBytes: number;
}

export class Backpressure {
  private highWater: number;
  private maxDelay: number;

  constructor(
    private readonly source: BackpressureSource,
    settings: Partial<BackpressureSettings> & { highWaterBytes: number; maxDelayMs: number },
  ) {
    this.highWater = settings.highWaterBytes;
    this.maxDelay = settings.maxDelayMs;
    this.update(settings);
  }

  get settings(): BackpressureSettings {
    return { highWaterBytes: this.highWater, hardLimitBytes: this.source.hardLimitBytes, maxDelayMs: this.maxDelay };
  }

  /** Changes some settings, checked together: 0 <= highWater < hardLimit, maxDelay >= 0. */
  update(changes: Partial<BackpressureSettings>): void {
    const next = { ...this.settings, ...changes };
    if (!Number.isSafeInteger(next.hardLimitBytes) || next.hardLimitBytes <= 0) {
      throw badInput('hardLimitBytes', next.hardLimitBytes, 'a positive whole number of bytes');
    }
    if (!Number.isSafeInteger(next.highWaterBytes) || next.highWaterBytes < 0 || next.highWaterBytes >= next.hardLimitBytes) {
      throw badInput('highWaterBytes', next.highWaterBytes, `a whole number of bytes below hardLimitBytes (${next.hardLimitBytes})`);
    }
    if (!Number.isFinite(next.maxDelayMs) || next.maxDelayMs < 0) throw badInput('maxDelayMs', next.maxDelayMs, 'a non-negative number of milliseconds');
    this.highWater = next.highWaterBytes;
    this.maxDelay = next.maxDelayMs;
    if (this.source.hardLimitBytes !== next.hardLimitBytes) this.source.hardLimitBytes = next.hardLimitBytes;
  }

  /** The delay a write acknowledged now would get. */
  get currentDelayMs(): number {
    return this.delayFor(this.source.unshippedBytes);
  }

  /** The formula above, for a given number of unshipped bytes. */
  delayFor(unshippedBytes: number): number {
    if (unshippedBytes <= this.highWater || this.maxDelay === 0) return 0;
    const over = (unshippedBytes - this.highWater) / (this.source.hardLimitBytes - this.highWater);
    return this.maxDelay * Math.min(1, over);
  }

  /** Waits the current delay (if any); resolves with the milliseconds waited. */
  async delay(): Promise<number> {
    const ms = this.currentDelayMs;
    if (ms > 0) await sleep(ms);
    return ms;
  }
}
