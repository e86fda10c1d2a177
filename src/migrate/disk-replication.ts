/**
 * One disk's live replication, wired end to end: the source disk under a capture filter
 * (with write backpressure), its change tracker, the base copy, the delta shipper, the
 * replica applier, the figures an operator watches, and the disk-level cutover.
 *
 * Source and destination live in one process here (the CLI, the demo and tests); the parts
 * are the same ones a split deployment runs on each side.
 */
import { FerryError, FileDevice, Logger } from '../core/index.js';
import { Backpressure, CaptureFilter, ChangeTracker, type BackpressureSettings, type JournalOptions, type TrackingMode } from '../delta/index.js';
import type { Repository } from '../store/index.js';
import { copyDisk, type CopyProgress, type CopyResult } from './background-copy.js';
import { DeltaShipper } from './delta-shipper.js';
import { cutoverDisk, type CutoverSource, type DiskCutoverOptions, type DiskCutoverResult } from './disk-cutover.js';
import { ReplicaApplier } from './replica-applier.js';
import type { Throttle } from './throttle.js';
import { compareDisks } from './verify.js';

export interface DiskReplicationOptions {
  diskId: string;
  sourcePath: string;
  /** Directory of the change tracker's journal and state (on the source host). */
  trackerDir: string;
  repo: Repository;
  replicaPath: string;
  throttle?: Throttle;
  journal?: Omit<JournalOptions, 'logger'>;
  backpressure?: Partial<Omit<BackpressureSettings, 'hardLimitBytes'>>;
  /** How often the applier polls the store (default 50 ms). */
  applyPollMs?: number;
  logger?: Logger;
}

export interface ReplicationFigures {
  mode: TrackingMode;
  consistent: boolean;
  /** Journal records recorded at the source and not yet applied at the replica. */
  lagSeq: number;
  /** Age of the oldest change not yet applied at the replica (0 when caught up). */
  lagSeconds: number;
  /** Bytes waiting at the source: unshipped journal plus dirty blocks. */
  backlogBytes: number;
  foregroundRateBytesPerSec: number;
  backgroundRateBytesPerSec: number;
  drainRateBytesPerSec: number;
  writeDelayMs: number;
  /** Predicted cutover pause: final delta size / measured drain rate, plus apply time. */
  predictedPauseMs: number;
  sourceSeq: number;
  replicaSeq: number;
}

const sampleEveryMs = 100;
const keepSamplesMs = 10 * 60 * 1000;

export class DiskReplication {
  private applier: ReplicaApplier | undefined;
  private applying: Promise<void> | undefined;
  private readonly stopApplying = new AbortController();
  /** (time, source seq, bytes passed) samples: lag in seconds and rates come from these. */
  private readonly samples: Array<{ at: number; seq: number; foreground: number; background: number }> = [];
  private readonly sampler: NodeJS.Timeout;

  private constructor(
    readonly options: DiskReplicationOptions,
    readonly source: FileDevice,
    readonly tracker: ChangeTracker,
    readonly backpressure: Backpressure,
    /** The disk as the VM must see it: serve this over NBD. */
    readonly filter: CaptureFilter,
    readonly shipper: DeltaShipper,
  ) {
    this.sampler = setInterval(() => this.sample(), sampleEveryMs).unref();
    this.sample();
  }

  /** Opens the source under capture and starts shipping deltas. */
  static async start(options: DiskReplicationOptions): Promise<DiskReplication> {
    const logger = options.logger ?? Logger.silent();
    const source = await FileDevice.open(options.sourcePath);
    const tracker = await ChangeTracker.open({ dir: options.trackerDir, sizeBytes: source.sizeBytes, journal: options.journal, logger });
    const hardLimit = tracker.hardLimitBytes;
    const backpressure = new Backpressure(tracker, {
      highWaterBytes: options.backpressure?.highWaterBytes ?? Math.floor(hardLimit / 2),
      maxDelayMs: options.backpressure?.maxDelayMs ?? 100,
    });
    const filter = new CaptureFilter(source, tracker, { backpressure });
    // The shipper reads the disk itself, not through the filter: a quiesced filter holds
    // reads too, and the final drain at cutover must still read dirty blocks.
    const shipper = new DeltaShipper({ repo: options.repo, diskId: options.diskId, tracker, source, throttle: options.throttle, logger });
    shipper.start();
    return new DiskReplication(options, source, tracker, backpressure, filter, shipper);
  }

  /**
   * Copies the disk's existing data into the store. Capture is already on; the epoch is
   * the tracker's seq before the first byte is read (invariant 1).
   */
  async baseCopy(options: { signal?: AbortSignal; onProgress?: (p: CopyProgress) => void; concurrency?: number } = {}): Promise<CopyResult> {
    const epoch = this.tracker.currentSeq;
    return copyDisk({
      repo: this.options.repo,
      disk: this.source, // reads need no capture; the filter only sees to writes
      diskName: this.options.diskId,
      epoch,
      throttle: this.options.throttle,
      ...options,
    });
  }

  /** Builds the replica from a base manifest and keeps applying deltas in the background. */
  async startReplica(manifestId: string, signal?: AbortSignal): Promise<ReplicaApplier> {
    this.applier = await ReplicaApplier.create({
      repo: this.options.repo,
      diskId: this.options.diskId,
      manifestId,
      replicaPath: this.options.replicaPath,
      signal,
    });
    this.applying = this.applyLoop(this.applier);
    return this.applier;
  }

  figures(): ReplicationFigures {
    const state = this.tracker.state();
    const shipped = this.shipper.figures();
    const replicaSeq = this.applier?.nextSeq ?? 0;
    const backlogBytes = state.unshippedJournalBytes + state.dirtyBytes;
    const now = Date.now();
    const window = this.samples.filter((s) => s.at >= now - 2000);
    const first = window[0];
    const last = this.samples[this.samples.length - 1];
    const seconds = first && last && last.at > first.at ? (last.at - first.at) / 1000 : 0;
    // The oldest change not applied yet was made after the last sample that still had
    // the source at or below the replica's seq.
    let lagSeconds = 0;
    if (replicaSeq < state.currentSeq) {
      const behind = this.samples.find((s) => s.seq > replicaSeq);
      lagSeconds = behind ? (now - behind.at) / 1000 : 0;
    }
    const drain = shipped.drainRateBytesPerSec;
    return {
      mode: state.mode,
      consistent: state.consistent && (this.applier?.consistent ?? true),
      lagSeq: Math.max(0, state.currentSeq - replicaSeq),
      lagSeconds,
      backlogBytes,
      foregroundRateBytesPerSec: seconds > 0 ? (last!.foreground - first!.foreground) / seconds : 0,
      backgroundRateBytesPerSec: seconds > 0 ? (last!.background - first!.background) / seconds : 0,
      drainRateBytesPerSec: drain,
      writeDelayMs: this.backpressure.currentDelayMs,
      predictedPauseMs: drain > 0 ? (1000 * backlogBytes) / drain : backlogBytes === 0 ? 0 : Infinity,
      sourceSeq: state.currentSeq,
      replicaSeq,
    };
  }

  /** The source side as the cutover sees it. */
  cutoverSource(): CutoverSource {
    return {
      quiesce: () => this.filter.quiesce(),
      resume: async () => this.filter.resume(),
      drainFinal: async (signal) => {
        await this.shipper.drain(signal);
        const { tracker } = this;
        if (tracker.mode !== 'streaming' || !tracker.consistent || tracker.journal.sealedSegments().length > 0) {
          throw new FerryError('invalid-state', `disk ${this.options.diskId}: changes are still unshipped after the final drain (mode ${tracker.mode})`);
        }
        return tracker.currentSeq;
      },
    };
  }

  /** The disk-level cutover: see disk-cutover.ts. The source stays paused after success. */
  async cutover(options: DiskCutoverOptions = {}): Promise<DiskCutoverResult> {
    const applier = this.applier;
    if (!applier) throw new FerryError('invalid-state', `disk ${this.options.diskId}: cutover before the replica was started`);
    const compare = async (signal?: AbortSignal) => {
      const replica = await FileDevice.open(applier.replicaPath, { readOnly: true });
      try {
        return await compareDisks(this.source, replica, { signal });
      } finally {
        await replica.close();
      }
    };
    return cutoverDisk({ source: this.cutoverSource(), replica: applier, compare }, options);
  }

  async close(): Promise<void> {
    clearInterval(this.sampler);
    this.stopApplying.abort();
    await this.applying;
    await this.shipper.stop();
    if (this.filter.quiesced) this.filter.resume();
    await this.tracker.close();
    await this.filter.close();
  }

  private sample(): void {
    const passed = this.options.throttle?.bytesPassed;
    const now = Date.now();
    this.samples.push({
      at: now,
      seq: this.tracker.currentSeq,
      foreground: passed?.foreground ?? this.shipper.figures().bytesShipped,
      background: passed?.background ?? 0,
    });
    while (this.samples.length > 2 && this.samples[0]!.at < now - keepSamplesMs) this.samples.shift();
  }

  private async applyLoop(applier: ReplicaApplier): Promise<void> {
    const signal = this.stopApplying.signal;
    while (!signal.aborted) {
      await applier.applyAvailable(signal).catch((err: unknown) => {
        if (!signal.aborted) (this.options.logger ?? Logger.silent()).warn('applying deltas failed, will retry', { error: String(err) });
      });
      await new Promise((resolve) => setTimeout(resolve, this.options.applyPollMs ?? 50));
    }
  }
}

