/**
 * Progress of seed work, reported every `intervalMs` to a callback: core's meter (bytes,
 * rate over a sliding window, ETA) with the reporting built in, as the seed jobs want it.
 */
import { ProgressMeter, everyMs, type Progress } from '../core/index.js';

export type SeedProgress = Progress;

export class SeedProgressMeter {
  private readonly meter: ProgressMeter;
  private readonly report: (progress: SeedProgress, final?: boolean) => void;

  constructor(bytesTotal: number, done = 0, report?: (progress: SeedProgress) => void, intervalMs = 250) {
    this.meter = new ProgressMeter(bytesTotal, done);
    this.report = everyMs(intervalMs, report);
  }

  add(bytes: number): void {
    this.meter.add(bytes);
    this.report(this.meter.snapshot());
  }

  /** Reports now, whatever the interval (the final figure). */
  flush(): void {
    this.report(this.meter.snapshot(), true);
  }

  snapshot(): SeedProgress {
    return this.meter.snapshot();
  }
}
