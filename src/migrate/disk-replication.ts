/**
 * One disk's live replication, wired end to end: the source disk under a capture filter
 * (with write backpressure), its change tracker, the base copy, the delta shipper, the
 * replica applier, the figures an operator watches, and the disk-level cutover.
 *
 * SourceReplication is the source side alone (what `ferry filter` runs per disk);
 * DiskReplication adds the replica side in the same process (the demo and tests). The parts
 * are the same ones a split deployment runs on each side.
 */
import { FerryError, FileDevice, Logger, hashDisk } from '../core/index.js';
import { cutoverDisk, type CutoverSource, type DiskCutoverOptions, type DiskCutoverResult, type FinalDrain } from '../cutover/index.js';
import {
  Backpressure,
  CaptureFilter,
  ChangeTracker,
  DeltaShipper,
  ReplicaApplier,
  fenceMessage,
  readFence,
  removeFence,
  writeFence,
  type BackpressureSettings,
  type FenceRecord,
  type JournalOptions,
  type TrackingMode,
} from '../delta/index.js';
import type { Repository } from '../store/index.js';
import { initReplica } from './replica-init.js';
import { copyDisk, type CopyProgress, type CopyResult } from './background-copy.js';
import type { Throttle } from './throttle.js';

export interface SourceReplicationOptions {
  diskId: string;
  sourcePath: string;
  /** Directory of the change tracker's journal and state (on the source host). */
  trackerDir: string;
  repo: Repository;
  throttle?: Throttle;
  journal?: Omit<JournalOptions, 'logger'>;
  backpressure?: Partial<Omit<BackpressureSettings, 'hardLimitBytes'>>;
  logger?: Logger;
}

export interface DiskReplicationOptions extends SourceReplicationOptions {
  replicaPath: string;
  /** How often the applier polls the store (default 50 ms). */
  applyPollMs?: number;
}

export interface ReplicationFigures {
  mode: TrackingMode;
  consistent: boolean;
  /**
   * Journal records recorded at the source and not yet at the far end: applied at the
   * replica (DiskReplication), or in the store (SourceReplication, which sees no replica).
   */
  lagSeq: number;
  /** Age of the oldest change not yet at the far end (0 when caught up). */
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
  /** The far end's seq: the replica's next seq, or (source side only) the shipped seq. */
  replicaSeq: number;
}

interface SourceParts {
  source: FileDevice;
  tracker: ChangeTracker;
  backpressure: Backpressure;
  filter: CaptureFilter;
  shipper: DeltaShipper;
  fence: FenceRecord | undefined;
}

const sampleEveryMs = 100;
const keepSamplesMs = 10 * 60 * 1000;

/**
 * The source side of one disk's replication: the disk under a capture filter (serve
 * `filter` to the VM), its change tracker, the base copy and the delta shipper. It knows
 * the store, never the replica: a `ferry filter` process runs one per disk.
 */
export class SourceReplication {
  /** (time, source seq, bytes sent) samples: lag in seconds and rates come from these. */
  private readonly samples: Array<{ at: number; seq: number; foreground: number; background: number }> = [];
  private readonly sampler: NodeJS.Timeout;
  /** Bytes uploaded by base copies of this disk (background traffic). */
  private baseCopyBytes = 0;
  readonly source: FileDevice;
  readonly tracker: ChangeTracker;
  readonly backpressure: Backpressure;
  /** The disk as the VM must see it: serve this over NBD. */
  readonly filter: CaptureFilter;
  private shipperValue: DeltaShipper;
  private fenceRecord: FenceRecord | undefined;

  protected constructor(
    readonly options: SourceReplicationOptions,
    parts: SourceParts,
  ) {
    this.source = parts.source;
    this.tracker = parts.tracker;
    this.backpressure = parts.backpressure;
    this.filter = parts.filter;
    this.shipperValue = parts.shipper;
    this.fenceRecord = parts.fence;
    this.sampler = setInterval(() => this.sample(), sampleEveryMs).unref();
    this.sample();
  }

  /** Opens the source under capture and starts shipping deltas. */
  static async start(options: SourceReplicationOptions): Promise<SourceReplication> {
    return new SourceReplication(options, await SourceReplication.openParts(options));
  }

  protected static async openParts(options: SourceReplicationOptions): Promise<SourceParts> {
    const logger = options.logger ?? Logger.silent();
    const source = await FileDevice.open(options.sourcePath);
    let tracker: ChangeTracker;
    let fence: FenceRecord | undefined;
    try {
      // A disk fenced by its cutover stays fenced: read before anything can serve it.
      fence = await readFence(options.trackerDir);
      tracker = await ChangeTracker.open({ dir: options.trackerDir, sizeBytes: source.sizeBytes, journal: options.journal, logger });
    } catch (err) {
      await source.close();
      throw err;
    }
    const hardLimit = tracker.hardLimitBytes;
    const backpressure = new Backpressure(tracker, {
      highWaterBytes: options.backpressure?.highWaterBytes ?? Math.floor(hardLimit / 2),
      maxDelayMs: options.backpressure?.maxDelayMs ?? 100,
    });
    const filter = new CaptureFilter(source, tracker, { backpressure });
    if (fence) {
      filter.fence(fenceMessage(fence));
      logger.warn('disk is fenced since its cutover: IO is refused', { disk: options.diskId, cutOverAt: fence.at, replication: fence.replication });
    }
    const shipper = SourceReplication.newShipper(options, tracker, source);
    shipper.start();
    return { source, tracker, backpressure, filter, shipper, fence };
  }

  private static newShipper(options: SourceReplicationOptions, tracker: ChangeTracker, source: FileDevice, parked = false): DeltaShipper {
    // The shipper reads the disk itself, not through the filter: a quiesced filter holds
    // reads too, and the final drain at cutover must still read dirty blocks.
    const logger = options.logger ?? Logger.silent();
    return new DeltaShipper({ repo: options.repo, diskId: options.diskId, tracker, source, throttle: options.throttle, parked, logger });
  }

  get shipper(): DeltaShipper {
    return this.shipperValue;
  }

  /** Parked in bitmap mode: see `park`. */
  get parked(): boolean {
    return this.shipperValue.parked;
  }

  /**
   * Parks the disk in bitmap mode: only dirty blocks are tracked and no resync runs until
   * `unpark()` (a seed in transit, a link too slow for streaming). Resolves once the
   * shipment under way is done and the tracker is in bitmap mode.
   */
  async park(reason: string, signal?: AbortSignal): Promise<void> {
    this.shipperValue.park();
    // Shipments are serialized: once this one is done, none can start a resync.
    await this.shipperValue.shipReady(signal);
    await this.tracker.switchToBitmap(reason);
  }

  /** Back to streaming: the shipper ships the dirty blocks as a resync, then the journal. */
  unpark(): void {
    this.shipperValue.unpark();
  }

  /**
   * Replaces the shipper with a new one, as when the shipping side restarts: the old one
   * is stopped wherever it was (a resync under way is left unfinished, its blocks still
   * dirty) and the new one knows nothing of it.
   */
  async restartShipper(): Promise<void> {
    await this.shipperValue.stop();
    this.shipperValue = SourceReplication.newShipper(this.options, this.tracker, this.source, this.parked);
    this.shipperValue.start();
  }

  /** Set while the disk is fenced after its cutover. */
  get fence(): Readonly<FenceRecord> | undefined {
    return this.fenceRecord;
  }

  /**
   * The cutover's commit point at the source (invariant 7): called quiesced, after the final
   * drain; records the fence durably, then refuses all IO, held IO included.
   */
  async fenceSource(owner: string, finalSeq: number): Promise<FenceRecord> {
    const { diskId } = this.options;
    if (this.fenceRecord) throw new FerryError('invalid-state', fenceMessage(this.fenceRecord));
    if (!this.filter.quiesced) throw new FerryError('invalid-state', `disk ${diskId}: fencing needs the source quiesced first`);
    const record: FenceRecord = { version: 1, disk: diskId, replication: this.tracker.replication, finalSeq, at: new Date().toISOString(), owner };
    await writeFence(this.options.trackerDir, record);
    this.filter.fence(fenceMessage(record));
    this.fenceRecord = record;
    return record;
  }

  /**
   * An operator's deliberate release of the fence: the disk serves IO again, as a new
   * replication (the cut-over one is finished; its replica follows nothing more).
   */
  async releaseFence(reason: string): Promise<string> {
    const record = this.fenceRecord;
    if (!record) throw new FerryError('invalid-state', `disk ${this.options.diskId} is not fenced`);
    await removeFence(this.options.trackerDir);
    const replication = await this.tracker.newReplication(`fence released: ${reason}`);
    this.fenceRecord = undefined;
    this.filter.unfence();
    return replication;
  }

  /**
   * Copies the disk's existing data into the store. Capture is already on; the epoch is
   * the tracker's seq before the first byte is read (invariant 1).
   */
  async baseCopy(options: { signal?: AbortSignal; onProgress?: (p: CopyProgress) => void; concurrency?: number } = {}): Promise<CopyResult> {
    const epoch = this.tracker.currentSeq;
    let counted = 0;
    const count = (p: CopyProgress) => {
      this.baseCopyBytes += p.stats.bytesUploaded - counted;
      counted = p.stats.bytesUploaded;
    };
    return copyDisk({
      repo: this.options.repo,
      disk: this.source, // reads need no capture; the filter only sees to writes
      diskName: this.options.diskId,
      epoch,
      replication: this.tracker.replication,
      // Writes went on while it read: the restored copy is consistent once replay passes its end.
      seqNow: () => this.tracker.currentSeq,
      throttle: this.options.throttle,
      ...options,
      onProgress: (p) => {
        count(p);
        options.onProgress?.(p);
      },
    });
  }

  /** Figures as seen from the source: "far end" is the store (the shipped seq). */
  figures(): ReplicationFigures {
    return this.figuresAgainst(this.shipper.figures().shippedThroughSeq, true);
  }

  protected figuresAgainst(replicaSeq: number, replicaConsistent: boolean): ReplicationFigures {
    const state = this.tracker.state();
    const shipped = this.shipper.figures();
    const backlogBytes = state.unshippedJournalBytes + state.dirtyBytes;
    const now = Date.now();
    const window = this.samples.filter((s) => s.at >= now - 2000);
    const first = window[0];
    const last = this.samples[this.samples.length - 1];
    const seconds = first && last && last.at > first.at ? (last.at - first.at) / 1000 : 0;
    // The oldest change not at the far end yet was made after the last sample that still
    // had the source at or below the far end's seq.
    let lagSeconds = 0;
    if (replicaSeq < state.currentSeq) {
      const behind = this.samples.find((s) => s.seq > replicaSeq);
      lagSeconds = behind ? (now - behind.at) / 1000 : 0;
    }
    const drain = shipped.drainRateBytesPerSec;
    return {
      mode: state.mode,
      consistent: state.consistent && replicaConsistent,
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

  /** The source side as an in-process cutover sees it. */
  cutoverSource(owner = 'in-process cutover'): CutoverSource {
    return {
      quiesce: () => this.filter.quiesce(),
      resume: async () => this.filter.resume(),
      drainFinal: (signal) => this.drainFinal(signal),
      fence: async (finalSeq) => {
        await this.fenceSource(owner, finalSeq);
      },
      hash: (signal) => hashDisk(this.source, signal),
    };
  }

  /**
   * Called quiesced: seals the journal and ships everything, a resync too (even if the
   * operator had parked the disk in bitmap mode: a cutover needs every change shipped).
   * Resolves with the seq replay must reach and the bytes shipped.
   */
  async drainFinal(signal?: AbortSignal): Promise<FinalDrain> {
    if (!this.filter.quiesced) throw new FerryError('invalid-state', `disk ${this.options.diskId}: the final drain needs the source quiesced first`);
    this.unpark();
    const before = this.shipper.figures().bytesShipped;
    await this.shipper.drain(signal);
    const { tracker } = this;
    if (tracker.mode !== 'streaming' || !tracker.consistent || tracker.sealedSegments().length > 0) {
      throw new FerryError('invalid-state', `disk ${this.options.diskId}: changes are still unshipped after the final drain (mode ${tracker.mode})`);
    }
    return { finalSeq: tracker.currentSeq, bytes: this.shipper.figures().bytesShipped - before };
  }

  /**
   * Stops cleanly: stops shipping (after the shipment under way), lets held IO through,
   * flushes the disk and the journal, seals the open segment (it ships after a restart),
   * closes the tracker (so the next open trusts its state) and the disk. The caller stops
   * the IO first (closes the NBD server). The journal stays on disk.
   */
  async close(): Promise<void> {
    clearInterval(this.sampler);
    await this.shipper.stop();
    if (this.filter.quiesced) this.filter.resume();
    try {
      await this.filter.flush();
      if (this.tracker.mode === 'streaming') await this.tracker.seal();
    } catch (err) {
      // The tracker saves what it can; a journal that failed has fallen back to the bitmap.
      (this.options.logger ?? Logger.silent()).warn('flushing before close failed', { disk: this.options.diskId, error: String(err) });
    }
    await this.tracker.close();
    await this.filter.close();
  }

  private sample(): void {
    const now = Date.now();
    const shipped = this.shipper.figures();
    this.samples.push({
      at: now,
      seq: this.tracker.currentSeq,
      foreground: shipped.bytesShipped,
      background: this.baseCopyBytes,
    });
    while (this.samples.length > 2 && this.samples[0]!.at < now - keepSamplesMs) this.samples.shift();
  }
}

/**
 * Both sides of one disk in one process (the demo and tests): a SourceReplication plus the
 * replica applier and the disk-level cutover.
 */
export class DiskReplication extends SourceReplication {
  private applier: ReplicaApplier | undefined;
  private applying: Promise<void> | undefined;
  private readonly stopApplying = new AbortController();

  private constructor(
    override readonly options: DiskReplicationOptions,
    parts: SourceParts,
  ) {
    super(options, parts);
  }

  /** Opens the source under capture and starts shipping deltas. */
  static override async start(options: DiskReplicationOptions): Promise<DiskReplication> {
    return new DiskReplication(options, await SourceReplication.openParts(options));
  }

  /** Builds the replica from a base manifest and keeps applying deltas in the background. */
  async startReplica(manifestId: string, signal?: AbortSignal): Promise<ReplicaApplier> {
    const applier = await initReplica({
      repo: this.options.repo,
      diskId: this.options.diskId,
      manifestId,
      replicaPath: this.options.replicaPath,
      signal,
    });
    this.applier = applier;
    const logger = this.options.logger ?? Logger.silent();
    this.applying = applier
      .follow({
        signal: this.stopApplying.signal,
        pollMs: this.options.applyPollMs ?? 50,
        onRetry: (error, failures) => logger.warn('applying deltas failed, will retry', { error: error.message, failures }),
      })
      .then(
        () => {},
        (err: unknown) => logger.error('applying deltas failed', { error: String(err) }),
      );
    return applier;
  }

  override figures(): ReplicationFigures {
    return this.figuresAgainst(this.applier?.nextSeq ?? 0, this.applier?.consistent ?? true);
  }

  /** The disk-level cutover: see disk-cutover.ts. The source stays paused after success. */
  async cutover(options: DiskCutoverOptions = {}): Promise<DiskCutoverResult> {
    const applier = this.applier;
    if (!applier) throw new FerryError('invalid-state', `disk ${this.options.diskId}: cutover before the replica was started`);
    return cutoverDisk({ source: this.cutoverSource(), replica: applier }, options);
  }

  override async close(): Promise<void> {
    this.stopApplying.abort();
    await this.applying;
    await this.applier?.close();
    await super.close();
  }
}
