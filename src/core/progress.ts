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

export interface ProgressMeterOptions {
  /** Bytes already done before this meter started (a resumed job). */
  done?: number;
  /** Told the progress as bytes are added, at most every `intervalMs`, and on `flush`. */
  onProgress?: (progress: Progress) => void;
  /** Default 250. */
  intervalMs?: number;
}

const windowMs = 5000;

export class ProgressMeter {
  private readonly startedAt = Date.now();
  private readonly samples: Array<{ at: number; bytes: number }> = [];
  private done: number;
  private readonly report: ((progress: Progress, final?: boolean) => void) | undefined;

  constructor(
    readonly bytesTotal: number,
    options: ProgressMeterOptions = {},
  ) {
    this.done = options.done ?? 0;
    this.samples.push({ at: this.startedAt, bytes: this.done });
    if (options.onProgress) this.report = everyMs(options.intervalMs ?? 250, options.onProgress);
  }

  add(bytes: number): void {
    this.done += bytes;
    const now = Date.now();
    this.samples.push({ at: now, bytes: this.done });
    while (this.samples.length > 2 && this.samples[1]!.at < now - windowMs) this.samples.shift();
    this.report?.(this.snapshot());
  }

  /** Reports now, whatever the interval (the final figure), and returns what it reported. */
  flush(): Progress {
    const progress = this.snapshot();
    this.report?.(progress, true);
    return progress;
  }

  snapshot(): Progress {
    const now = Date.now();
    const first = this.samples[0]!;
    const seconds = (now - first.at) / 1000;
    const rate = seconds > 0.05 ? (this.done - first.bytes) / seconds : 0;
    return {
      bytesDone: this.done,
      bytesTotal: this.bytesTotal,
      rateBytesPerSec: rate,
      etaSec: etaSec(this.bytesTotal - this.done, rate),
      elapsedMs: now - this.startedAt,
    };
  }
}

/** The progress of a job known by its figures, e.g. a status polled from another process. */
export function progressOf(job: { bytesDone: number; bytesTotal: number; rateBytesPerSec: number; startedAt: string }): Progress {
  return {
    bytesDone: job.bytesDone,
    bytesTotal: job.bytesTotal,
    rateBytesPerSec: job.rateBytesPerSec,
    etaSec: etaSec(job.bytesTotal - job.bytesDone, job.rateBytesPerSec),
    elapsedMs: Date.now() - Date.parse(job.startedAt),
  };
}

function etaSec(bytesLeft: number, rateBytesPerSec: number): number {
  return bytesLeft <= 0 ? 0 : rateBytesPerSec > 0 ? bytesLeft / rateBytesPerSec : Infinity;
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
