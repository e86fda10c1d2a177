/**
 * The replication rate budget of one link: a token bucket in bytes, shared by foreground
 * (deltas, served first) and background (base copy, served after) traffic, and changeable
 * while transfers run.
 *
 * bottleneck holds the waiting takes, in priority order, each a job weighted by its bytes
 * against the limiter's reservoir. The reservoir is refilled here rather than by
 * bottleneck's own increase timer, which adds a fixed amount per heartbeat and so loses
 * whatever time a late timer took: this refill adds `rate * elapsed` exactly, up to a burst
 * of `burstMs` worth of bytes. The bucket starts empty, so N bytes never pass in less than
 * N / rate seconds. Takes are split into pieces of a quarter burst so they never stall.
 */
import Bottleneck from 'bottleneck';
import { badInput, throwIfAborted } from '../core/index.js';

export type TrafficClass = 'foreground' | 'background';

const refillMs = 10;
const burstMs = 50;
const priorities: Record<TrafficClass, number> = { foreground: 1, background: 5 };

export class Throttle {
  private readonly limiter = new Bottleneck({ maxConcurrent: null, reservoir: 0 });
  private rate = 0;
  private tokens = 0; // fractional bytes earned but not yet added to the reservoir
  private lastRefill = performance.now();
  private timer: NodeJS.Timeout | undefined;
  /** Takes waiting for budget; while there are any, the refill timer keeps Node alive. */
  private waiting = 0;
  private readonly passed: Record<TrafficClass, number> = { foreground: 0, background: 0 };
  /** Counts rate decreases, so a refill computed at the old rate is dropped. */
  private rateLowered = 0;

  /** `rateBytesPerSec` 0 means unlimited. */
  constructor(rateBytesPerSec = 0) {
    this.setRate(rateBytesPerSec);
  }

  get rateBytesPerSec(): number {
    return this.rate;
  }

  /** Bytes let through so far, per traffic class. */
  get bytesPassed(): Readonly<Record<TrafficClass, number>> {
    return this.passed;
  }

  /** Changes the rate at once, for takes already waiting too. 0 lifts the limit. */
  setRate(rateBytesPerSec: number): void {
    if (!Number.isFinite(rateBytesPerSec) || rateBytesPerSec < 0) {
      throw badInput('rateBytesPerSec', rateBytesPerSec, 'a rate of 0 (unlimited) or more bytes per second');
    }
    const previous = this.rate;
    this.rate = Math.round(rateBytesPerSec);
    if (this.rate < previous) this.rateLowered++;
    if (this.rate === 0) {
      clearInterval(this.timer);
      this.timer = undefined;
      this.limiter.updateSettings({ reservoir: null }); // everything waiting runs now
    } else if (previous === 0 || !this.timer || this.rate < previous) {
      // A lowered rate starts from an empty bucket: budget earned at the old rate (a burst,
      // or a late timer's catch-up) must not pass at the new one.
      this.lastRefill = performance.now();
      this.tokens = 0;
      this.limiter.updateSettings({ reservoir: 0 });
      clearInterval(this.timer);
      this.timer = setInterval(() => void this.refill(), refillMs);
      if (this.waiting === 0) this.timer.unref();
    }
  }

  /** Resolves once `bytes` may be sent. */
  async take(bytes: number, traffic: TrafficClass = 'background', signal?: AbortSignal): Promise<void> {
    let left = bytes;
    while (left > 0) {
      throwIfAborted(signal);
      // Pieces well below the burst, so the bucket never has to fill to the brim (and
      // overflow, wasting budget) before the next piece can go.
      const piece = this.rate === 0 ? left : Math.min(left, Math.ceil(this.burstBytes / 4));
      this.waiting++;
      this.timer?.ref();
      try {
        await this.limiter.schedule({ weight: this.rate === 0 ? 0 : piece, priority: priorities[traffic] }, async () => {});
      } finally {
        if (--this.waiting === 0) this.timer?.unref();
      }
      this.passed[traffic] += piece;
      left -= piece;
    }
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.limiter.stop({ dropWaitingJobs: true }).catch(() => {});
  }

  private get burstBytes(): number {
    return Math.max(4096, Math.round((this.rate * burstMs) / 1000));
  }

  private async refill(): Promise<void> {
    const now = performance.now();
    this.tokens += (this.rate * (now - this.lastRefill)) / 1000;
    this.lastRefill = now;
    const whole = Math.floor(this.tokens);
    if (whole <= 0) return;
    this.tokens -= whole;
    const generation = this.rateLowered;
    const current = (await this.limiter.currentReservoir()) ?? 0;
    if (generation !== this.rateLowered) return;
    // The burst caps what an idle link may save up. While takes wait, every token earned
    // goes to them: a refill timer that ran late (a busy event loop) must not lose budget.
    const add = this.waiting > 0 ? whole : Math.min(whole, this.burstBytes - current);
    if (add > 0) await this.limiter.incrementReservoir(add);
  }
}
