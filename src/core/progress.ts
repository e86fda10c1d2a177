/**
 * Progress of long work: bytes done and total, rate and ETA. The rate is measured over a
 * sliding window so it follows changes (a throttle being raised) within seconds.
 */

export interface Progress {
  bytesDone: number;
  bytesTotal: number;
  rateBytesPerSec: number;
  /** Seconds left at the current rate; Infinity when the rate is still unknown. */
  etaSec: number;
  elapsedMs: number;
}

const windowMs = 5000;

export class ProgressMeter {
  private readonly startedAt = Date.now();
  private readonly samples: Array<{ at: number; bytes: number }> = [];
  /** `done`: bytes already done before this meter started (a resumed job). */
  constructor(
    readonly bytesTotal: number,
    private done = 0,
  ) {
    this.samples.push({ at: this.startedAt, bytes: done });
  }

  add(bytes: number): void {
    this.done += bytes;
    const now = Date.now();
    this.samples.push({ at: now, bytes: this.done });
    while (this.samples.length > 2 && this.samples[1]!.at < now - windowMs) this.samples.shift();
  }

  snapshot(): Progress {
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

/** Calls `report` at most every `intervalMs`, and always for the final call. */
export function everyMs<T>(intervalMs: number, report: ((value: T) => void) | undefined): (value: T, final?: boolean) => void {
  let last = 0;
  return (value, final = false) => {
    if (!report) return;
    const now = Date.now();
    if (final || now - last >= intervalMs) {
      last = now;
      report(value);
    }
  };
}
