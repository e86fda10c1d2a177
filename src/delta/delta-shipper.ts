/**
 * The delta shipper: foreground replication of one disk. It turns each sealed journal
 * segment into a journal delta in the store and then releases the segment (deleted locally
 * only once the store has it), and when the change tracker has fallen back to the dirty
 * bitmap it runs the resync that brings it back to streaming:
 *
 *   S = tracker.startStreaming()      journal restarts at S
 *   repeat: runs = tracker.takeDirtyRuns()  bits cleared before the blocks are read (invariant 4)
 *           read the runs, put resync delta (S, part n)
 *   put the final, empty piece; tracker.resyncComplete()
 *
 * Replay is then base + resync + journal from S. If a piece cannot be stored its runs are
 * marked dirty again, so no change is ever lost, only shipped later. If the tracker falls
 * back again during a resync, the piece under way is finished and the resync closed as final;
 * the next resync (at a later S) carries what the fall back marked dirty.
 *
 * Shipping is serialized: the loop and a cutover's drain never ship at the same time, so
 * deltas reach the store in seq order.
 */
import { Logger, asFerryError, isAllZero, throwIfAborted, type BlockDevice, type WriteData } from '../core/index.js';
import type { Repository } from '../store/index.js';
import type { ChangeTracker } from './change-tracker.js';
import type { Delta, DeltaExtent } from './delta-codec.js';
import { putDelta } from './delta-objects.js';
import type { SealedSegment } from './sealed-segment.js';

/** The link's byte-rate budget that deltas take from first (migrate's Throttle). */
export interface LinkBudget {
  /** 0: unlimited. */
  readonly rateBytesPerSec: number;
  take(bytes: number, traffic: 'foreground', signal?: AbortSignal): Promise<void>;
}

export interface DeltaShipperOptions {
  repo: Repository;
  diskId: string;
  tracker: ChangeTracker;
  /** The source disk, read for resync (directly: a quiesced capture filter holds reads). */
  source: BlockDevice;
  throttle?: LinkBudget;
  /** Start parked: no resync runs until `unpark()` (see `park`). Default false. */
  parked?: boolean;
  /** Largest resync piece (default 8 MiB). */
  resyncPieceBytes?: number;
  /** How often the loop looks for work when nothing wakes it (default 100 ms). */
  pollMs?: number;
  logger?: Logger;
}

export interface ShipperStats {
  deltasShipped: number;
  bytesShipped: number;
  /** Journal records shipped: every seq below this is in the store (or covered by a resync). */
  shippedThroughSeq: number;
  resyncs: number;
  resyncBytesShipped: number;
  /** Bytes per second the store accepted over the last shipments (the drain rate). */
  drainRateBytesPerSec: number;
  lastError?: string;
}

export class DeltaShipper {
  private readonly logger: Logger;
  private readonly stats: ShipperStats = {
    deltasShipped: 0,
    bytesShipped: 0,
    shippedThroughSeq: 0,
    resyncs: 0,
    resyncBytesShipped: 0,
    drainRateBytesPerSec: 0,
  };
  private resync: { seq: number; generation: number; nextPart: number; needsSeq: number } | undefined;
  private exclusive: Promise<unknown> = Promise.resolve();
  private loop: Promise<void> | undefined;
  private stopping: AbortController | undefined;
  private wake: (() => void) | undefined;
  private readonly onWork = () => this.wake?.();
  private parkedValue: boolean;

  constructor(private readonly options: DeltaShipperOptions) {
    this.logger = (options.logger ?? Logger.silent()).child({ disk: options.diskId });
    this.stats.shippedThroughSeq = options.tracker.currentSeq;
    this.parkedValue = options.parked ?? false;
  }

  /**
   * Parked: the tracker's dirty bitmap is left alone (no resync runs, so the journal does
   * not restart) while sealed segments still ship. A disk stays parked in bitmap mode while
   * a seed travels or while the operator wants it so.
   */
  get parked(): boolean {
    return this.parkedValue;
  }

  park(): void {
    this.parkedValue = true;
  }

  unpark(): void {
    this.parkedValue = false;
    this.onWork();
  }

  figures(): Readonly<ShipperStats> {
    // The link drains no faster than its cap, however fast the store takes a put.
    const cap = this.options.throttle?.rateBytesPerSec || Infinity;
    return { ...this.stats, drainRateBytesPerSec: Math.min(cap, this.stats.drainRateBytesPerSec) };
  }

  /** Starts shipping in the background until `stop()`. */
  start(): void {
    if (this.loop) return;
    this.stopping = new AbortController();
    this.options.tracker.on('sealed', this.onWork);
    this.options.tracker.on('mode', this.onWork);
    this.loop = this.run(this.stopping.signal);
  }

  /** Stops the loop after the shipment under way. */
  async stop(): Promise<void> {
    this.stopping?.abort();
    this.onWork();
    await this.loop;
    this.loop = undefined;
    this.options.tracker.off('sealed', this.onWork);
    this.options.tracker.off('mode', this.onWork);
  }

  /** Ships what is ready now: a resync if one is owed, then every sealed segment. */
  shipReady(signal?: AbortSignal): Promise<void> {
    const run = this.exclusive.then(() => this.shipReadyNow(signal));
    this.exclusive = run.catch(() => {});
    return run;
  }

  /**
   * Seals the open segment and ships everything, resync included: with the source
   * quiesced, the store then holds every change up to `tracker.currentSeq`.
   */
  async drain(signal?: AbortSignal): Promise<void> {
    await this.options.tracker.seal();
    await this.shipReady(signal);
    if (this.options.tracker.mode === 'bitmap' || this.options.tracker.sealedSegments().length > 0) {
      await this.shipReady(signal); // a fall back during the first pass left a resync
    }
  }

  private async run(signal: AbortSignal): Promise<void> {
    let backoffMs = 0;
    while (!signal.aborted) {
      try {
        await this.shipReady(signal);
        backoffMs = 0;
        delete this.stats.lastError;
      } catch (err) {
        if (signal.aborted) break;
        const error = asFerryError(err);
        this.stats.lastError = error.message;
        backoffMs = Math.min(5000, Math.max(100, backoffMs * 2));
        this.logger.warn('shipping failed, will retry', { error: error.message, retryInMs: backoffMs });
      }
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        setTimeout(resolve, backoffMs || (this.options.pollMs ?? 100)).unref();
      });
      this.wake = undefined;
    }
  }

  private async shipReadyNow(signal?: AbortSignal): Promise<void> {
    const { tracker } = this.options;
    const resyncOwed = tracker.mode === 'bitmap' || (!tracker.consistent && this.resync === undefined);
    if (!this.parkedValue && (resyncOwed || this.resync)) await this.runResync(signal);
    for (const segment of tracker.sealedSegments()) {
      throwIfAborted(signal);
      await this.shipSegment(segment, signal);
    }
  }

  private async shipSegment(segment: SealedSegment, signal?: AbortSignal): Promise<void> {
    if (segment.retired) return; // dropped for the bitmap meanwhile: the resync carries it
    const extents: DeltaExtent<WriteData>[] = [];
    for await (const extent of segment.readExtents()) extents.push(extent);
    // Once the delta is stored, its seqs must never be given out again.
    await this.options.tracker.reserveSeqsThrough(segment.lastSeq);
    await this.put({ kind: 'journal', seq: segment.firstSeq, endSeq: segment.lastSeq, part: 0, generation: 0, final: false, extents }, signal);
    await this.options.tracker.release(segment);
    this.stats.shippedThroughSeq = Math.max(this.stats.shippedThroughSeq, segment.lastSeq + 1);
  }

  private async runResync(signal?: AbortSignal): Promise<void> {
    const { tracker, source } = this.options;
    if (!this.resync) {
      // A tracker that is inconsistent while streaming owes a resync whose start we do not
      // know (a shipper restarted mid-way): fall back on purpose and start a new one.
      if (tracker.mode === 'streaming') await tracker.switchToBitmap('resync restarted');
      const needsSeq = tracker.resyncNeedsSeq; // read before streaming starts: it is the bitmap's
      const seq = await tracker.startStreaming();
      this.resync = { seq, generation: await tracker.newResyncGeneration(), nextPart: 0, needsSeq };
      this.stats.resyncs++;
      this.logger.info('resync started', { seq, dirtyBytes: tracker.dirtyBytes });
    }
    const resync = this.resync;
    for (;;) {
      throwIfAborted(signal);
      const runs = tracker.takeDirtyRuns(this.options.resyncPieceBytes ?? 8 * 1024 * 1024);
      // Closed early if the tracker fell back again: what it marked goes with the next resync.
      const final = runs.length === 0 || tracker.mode === 'bitmap';
      try {
        const extents: DeltaExtent<WriteData>[] = [];
        for (const run of runs) {
          const data = Buffer.allocUnsafe(run.length);
          await source.read(data, run.offset);
          extents.push(isAllZero(data) ? { kind: 'zero', offset: run.offset, length: run.length } : { kind: 'write', offset: run.offset, length: run.length, data });
        }
        const bytes = await this.put(
          { kind: 'resync', seq: resync.seq, generation: resync.generation, endSeq: tracker.currentSeq, part: resync.nextPart, final, needsSeq: resync.needsSeq, extents },
          signal,
        );
        this.stats.resyncBytesShipped += bytes;
      } catch (err) {
        tracker.markDirty(runs);
        throw err;
      }
      resync.nextPart++;
      if (final) break;
    }
    this.resync = undefined;
    const consistent = tracker.resyncComplete();
    this.logger.info('resync finished', { seq: resync.seq, parts: resync.nextPart, consistent });
  }

  /** Puts one delta under the link's budget (foreground: deltas go before base copy). */
  private async put(header: Omit<Delta<WriteData>, 'replication' | 'diskSizeBytes' | 'createdAtMs'>, signal?: AbortSignal): Promise<number> {
    const delta = { ...header, replication: this.options.tracker.replication, diskSizeBytes: this.options.source.sizeBytes, createdAtMs: Date.now() };
    const payload = delta.extents.reduce((sum, e) => sum + (e.kind === 'write' ? e.length : 0), 0);
    await this.options.throttle?.take(payload + 64, 'foreground', signal);
    const started = performance.now();
    const { sizeBytes } = await putDelta(this.options.repo, this.options.diskId, delta, signal);
    const seconds = Math.max(1e-3, (performance.now() - started) / 1000);
    // Smoothed: one slow put should not swing the cutover prediction.
    const rate = sizeBytes / seconds;
    this.stats.drainRateBytesPerSec = this.stats.drainRateBytesPerSec === 0 ? rate : 0.8 * this.stats.drainRateBytesPerSec + 0.2 * rate;
    this.stats.deltasShipped++;
    this.stats.bytesShipped += sizeBytes;
    return sizeBytes;
  }
}
