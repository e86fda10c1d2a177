/**
 * Progress of seed work: bytes done and total, rate over a sliding window, ETA. The same
 * shape as src/migrate's Progress (seed may not import migrate), so the CLI shows both alike.
 */

export interface SeedProgress {
  bytesDone: number;
  bytesTotal: number;
  rateBytesPerSec: number;
  /** Seconds left at the current rate; Infinity while the rate is unknown. */
  etaSec: number;
  elapsedMs: number;
}

const windowMs = 5000;

export class SeedProgressMeter {
  private readonly startedAt = Date.now();
  private readonly samples: Array<{ at: number; bytes: number }> = [];
  private last = 0;

  constructor(
    readonly bytesTotal: number,
    private done = 0,
    private readonly report?: (progress: SeedProgress) => void,
    private readonly intervalMs = 250,
  ) {
    this.samples.push({ at: this.startedAt, bytes: done });
  }

  add(bytes: number): void {
    this.done += bytes;
    const now = Date.now();
    this.samples.push({ at: now, bytes: this.done });
    while (this.samples.length > 2 && this.samples[1]!.at < now - windowMs) this.samples.shift();
    if (this.report && now - this.last >= this.intervalMs) {
      this.last = now;
      this.report(this.snapshot());
    }
  }

  /** Reports now, whatever the interval (the final figure). */
  flush(): void {
    this.report?.(this.snapshot());
  }

  snapshot(): SeedProgress {
    const now = Date.now();
    const first = this.samples[0]!;
    const seconds = (now - first.at) / 1000;
    const rate = seconds > 0.05 ? (this.done - first.bytes) / seconds : 0;
    const left = this.bytesTotal - this.done;
    return {
      bytesDone: this.done,
      bytesTotal: this.bytesTotal,
      rateBytesPerSec: rate,
      etaSec: left <= 0 ? 0 : rate > 0 ? left / rate : Infinity,
      elapsedMs: now - this.startedAt,
    };
  }
}
