/**
 * The change tracker of one disk: what changed since the replica's base, in one of two modes
 * (docs/DESIGN.md, "Two ways to track, one replay"):
 *
 * - 'streaming': every write is journaled, in order, with a seq. The replica replays sealed
 *   segments; every segment boundary is a crash-consistent point.
 * - 'bitmap': only the dirty bitmap is marked; shipping reads the blocks' current contents.
 *
 * When the journal would pass its hard limit (or fails), the tracker falls back to the bitmap
 * rather than failing the VM's write (invariant 8): the extents of every unshipped journal
 * record are marked dirty, those segments dropped, and `consistent` becomes false. The way
 * back is `startStreaming()`: it returns the seq S the journal restarts at; the shipper then
 * drains the bitmap with `takeDirtyRuns` (the resync) and calls `resyncComplete()`.
 * Replay = base + resync + journal from S.
 *
 * The tracker also holds the disk's replication identity (invariant 9): created with the
 * tracker, kept across restarts, and sent with every delta, base copy and seed, because its
 * seqs count only within it. `newReplication()` starts another one (a disk released after
 * a cutover is a new replication: nothing replays its changes onto the old replica).
 *
 * Files in `dir`: journal/ (see journal.ts), tracker-state.json, dirty-bitmap.bin,
 * activity-log.bin (see activity-log.ts). The state says whether the tracker was closed
 * cleanly. After an unclean stop, writes may have reached the disk without being recorded
 * (the record follows the disk write) and records held in memory are gone, so the tracker
 * drops its journal, marks dirty the extents of the activity log (each of those writes lies
 * in one) and starts in bitmap mode, inconsistent. The resync needs the records below
 * `releasedBelow`: extents leave the activity log only once every record of theirs is below
 * that seq in the saved state, so the store has them.
 */
import { EventEmitter } from 'node:events';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FerryError, Logger, asFerryError, badInput, isReplicationId, newReplicationId, readJsonFile, writeDataBytes, writeFileAtomic, type WriteData, makeDirectory } from '../core/index.js';
import { ActivityLog } from './activity-log.js';
import { DirtyBitmap, defaultBlockSizeBytes, type Extent } from './dirty-bitmap.js';
import { Journal, type JournalOptions, type RecordKind, type SealedSegment } from './journal.js';

export type TrackingMode = 'streaming' | 'bitmap';

export interface ChangeTrackerOptions {
  /** Directory of this disk's tracking state (created if missing). */
  dir: string;
  sizeBytes: number;
  blockSizeBytes?: number;
  /** Mode of a tracker created fresh; a reopened one keeps its persisted mode. Default streaming. */
  mode?: TrackingMode;
  /** Extent size of the activity log (what an unclean stop resyncs per extent). Default 4 MiB. */
  activityExtentBytes?: number;
  /** Extents the activity log keeps while they are written to (see activity-log.ts). Default 1024. */
  activityHotExtents?: number;
  /**
   * How long saving a new `releasedBelow` may wait, so that the releases of many segments
   * share one save (extents leave the activity log only after it). Default 1000 ms; 0 saves
   * before each release resolves.
   */
  releasedSaveDelayMs?: number;
  journal?: Omit<JournalOptions, 'logger'>;
  logger?: Logger;
}

export interface ModeChange {
  mode: TrackingMode;
  reason: string;
  /** The journal's next seq at the change: for 'streaming', the S replay restarts from. */
  seq: number;
}

export interface ChangeTrackerEvents {
  mode: [change: ModeChange];
  consistent: [consistent: boolean];
  /** A journal segment was sealed and is ready to ship. */
  sealed: [segment: SealedSegment];
}

export interface ChangeTrackerState {
  replication: string;
  mode: TrackingMode;
  consistent: boolean;
  dirtyBlocks: number;
  dirtyBytes: number;
  unshippedJournalBytes: number;
  hardLimitBytes: number;
  currentSeq: number;
  sealedSegments: number;
}

interface PersistedState {
  version: 2;
  replication: string;
  clean: boolean;
  mode: TrackingMode;
  consistent: boolean;
  sizeBytes: number;
  blockSizeBytes: number;
  /** The generation of the last resync started (see newResyncGeneration). */
  resyncGeneration?: number;
  /** While a resync is owed: it needs every record below this seq applied first (see resyncNeedsSeq). */
  resyncNeedsSeq?: number;
  /**
   * Every record below this seq is in the store, or behind a resync the store holds whole:
   * what a resync after an unclean stop needs. Moves only while consistent.
   */
  releasedBelow?: number;
}

const stateFile = 'tracker-state.json';
const bitmapFile = 'dirty-bitmap.bin';
const activityLogFile = 'activity-log.bin';
const defaultReleasedSaveDelayMs = 1000;

export class ChangeTracker extends EventEmitter<ChangeTrackerEvents> {
  private modeValue: TrackingMode;
  private consistentValue: boolean;
  /** The journal being dropped into the bitmap, while a fall back is under way. */
  private switching: Promise<void> = Promise.resolve();
  private persisting: Promise<void> = Promise.resolve();
  private closed = false;
  private lastResyncGeneration = 0;
  private needsSeq = 0;
  private releasedBelow = 0;
  private releasedSaveDelayMs = defaultReleasedSaveDelayMs;
  private releasedSave: NodeJS.Timeout | undefined;
  /** Counts the times the tracker became inconsistent: a save begun before one is stale. */
  private inconsistencies = 0;

  private constructor(
    readonly dir: string,
    private readonly bitmap: DirtyBitmap,
    private readonly journal: Journal,
    private readonly activity: ActivityLog,
    private replicationValue: string,
    mode: TrackingMode,
    consistent: boolean,
    private readonly logger: Logger,
  ) {
    super();
    this.modeValue = mode;
    this.consistentValue = consistent;
    journal.on('failed', (err) => this.fallBack(`journal failed: ${err.message}`));
    journal.on('sealed', (segment) => this.emit('sealed', segment));
  }

  static async open(options: ChangeTrackerOptions): Promise<ChangeTracker> {
    const logger = options.logger ?? Logger.silent();
    const blockSizeBytes = options.blockSizeBytes ?? defaultBlockSizeBytes;
    await makeDirectory(options.dir);
    const previous = await readState(options.dir);
    if (previous && (previous.sizeBytes !== options.sizeBytes || previous.blockSizeBytes !== blockSizeBytes)) {
      throw new FerryError(
        'conflict',
        `change tracker ${options.dir} tracks a ${previous.sizeBytes}-byte disk in ${previous.blockSizeBytes}-byte blocks, not ${options.sizeBytes} in ${blockSizeBytes}`,
      );
    }
    const journal = await Journal.open(join(options.dir, 'journal'), { ...options.journal, logger });
    const activity = await ActivityLog.open(join(options.dir, activityLogFile), {
      sizeBytes: options.sizeBytes,
      extentBytes: options.activityExtentBytes,
      hotExtents: options.activityHotExtents,
      fresh: previous === undefined,
      recoveredSeq: journal.nextSeq - 1,
      logger,
    });
    let bitmap = new DirtyBitmap(options.sizeBytes, blockSizeBytes);
    let mode: TrackingMode = options.mode ?? 'streaming';
    // A fresh tracker in bitmap mode (say, while a seed is in transit) owes a resync.
    let consistent = mode === 'streaming';
    let needsSeq = 0;
    const unclean = previous !== undefined && (!previous.clean || journal.lostSegments.length > 0);
    // Saved at the last clean close; after an unclean stop, the bits of a resync then owed
    // still count (the activity log has their extents too, but this costs nothing).
    if (previous && (!unclean || !previous.consistent)) bitmap = (await readBitmap(options.dir, options.sizeBytes, blockSizeBytes)) ?? bitmap;
    if (previous && !unclean) {
      mode = previous.mode;
      consistent = previous.consistent;
      if (!consistent) needsSeq = previous.resyncNeedsSeq ?? 0;
    } else if (previous) {
      if (activity.recovered && previous.releasedBelow !== undefined) {
        for (const extent of activity.extents()) bitmap.mark(extent.offset, extent.length);
        // Records below releasedBelow are in the store; a resync owed before keeps needing less.
        needsSeq = previous.consistent ? previous.releasedBelow : Math.min(previous.releasedBelow, previous.resyncNeedsSeq ?? 0);
      } else bitmap.markAll(); // nothing says where the writes went
      // The journal's records lie in the activity log's extents: marked already.
      await journal.discardAll(() => {}, () => {});
      mode = 'bitmap';
      consistent = false;
      logger.warn('change tracker was not closed cleanly: the activity log\'s extents are dirty, resync needed', {
        dir: options.dir,
        dirtyBytes: bitmap.dirtyBytes,
        lostSegments: journal.lostSegments.length,
      });
    }
    const replication = previous?.replication ?? newReplicationId();
    if (!previous) logger.info('change tracker created: a new replication', { dir: options.dir, replication });
    const tracker = new ChangeTracker(options.dir, bitmap, journal, activity, replication, mode, consistent, logger);
    tracker.lastResyncGeneration = previous?.resyncGeneration ?? 0;
    tracker.needsSeq = needsSeq;
    tracker.releasedBelow = previous?.releasedBelow ?? 0;
    tracker.releasedSaveDelayMs = options.releasedSaveDelayMs ?? defaultReleasedSaveDelayMs;
    // From here until close() the state on disk says "not clean".
    await tracker.persist(false);
    return tracker;
  }

  get mode(): TrackingMode {
    return this.modeValue;
  }

  /** Size of the tracked disk in bytes. */
  get sizeBytes(): number {
    return this.bitmap.sizeBytes;
  }

  /** The replication this tracker's seqs count in. */
  get replication(): string {
    return this.replicationValue;
  }

  /**
   * Starts a new replication of the disk: deltas from here on carry the new id, and only a
   * replica built from a base copy or seed made after this follows them.
   */
  async newReplication(reason: string): Promise<string> {
    this.checkOpen();
    const previous = this.replicationValue;
    this.replicationValue = newReplicationId();
    await this.persist(false);
    this.logger.info('change tracker: a new replication', { dir: this.dir, replication: this.replicationValue, previous, reason });
    return this.replicationValue;
  }

  /** False from a fall back to the bitmap until `resyncComplete()`: the replica lags a resync. */
  get consistent(): boolean {
    return this.consistentValue;
  }

  get dirtyBytes(): number {
    return this.bitmap.dirtyBytes;
  }

  /** Whether block `index` (of `blockSizeBytes`) is marked dirty. */
  isDirty(index: number): boolean {
    return this.bitmap.isDirty(index);
  }

  /**
   * Clears and returns dirty runs of up to `maxBytes` in all, for a resync piece. The bits
   * are cleared before the caller reads the blocks (invariant 4): a write that lands after
   * this marks them again.
   */
  takeDirtyRuns(maxBytes: number): Extent[] {
    return this.bitmap.takeRuns(maxBytes);
  }

  /** Marks runs dirty again: a resync piece that could not be stored gives its runs back. */
  markDirty(runs: readonly Extent[]): void {
    for (const run of runs) this.bitmap.mark(run.offset, run.length);
  }

  /** Sealed journal segments not yet released, in seq order: what the shipper ships next. */
  sealedSegments(): readonly SealedSegment[] {
    return this.journal.sealedSegments();
  }

  /** Seals the open journal segment now (if it holds records) and resolves with it. */
  seal(): Promise<SealedSegment | undefined> {
    return this.journal.seal();
  }

  /** No seq up to `lastSeq` is given out again, even after a power loss (call before storing them). */
  reserveSeqsThrough(lastSeq: number): Promise<void> {
    return this.journal.reserveSeqsThrough(lastSeq);
  }

  /** The segment is durable in the store: the journal forgets it. */
  async release(segment: SealedSegment): Promise<void> {
    await this.journal.release(segment);
    await this.advanceReleasedBelow();
  }

  get unshippedJournalBytes(): number {
    return this.journal.unshippedBytes;
  }

  /** What backpressure watches: the journal's unshipped bytes. */
  get unshippedBytes(): number {
    return this.journal.unshippedBytes;
  }

  get hardLimitBytes(): number {
    return this.journal.hardLimitBytes;
  }

  set hardLimitBytes(bytes: number) {
    this.journal.hardLimitBytes = bytes;
  }

  /**
   * The epoch for a base copy that starts now: the seq the next recorded write will get.
   * Every write recorded with a smaller seq completed on the disk before this was read, so a
   * copy that starts reading afterwards sees it; every write that may be missing from (or
   * torn in) the copy gets a seq >= this. Replaying records from this seq on, in order, over
   * the copy yields the disk. Only meaningful in streaming mode: in bitmap mode no records are
   * made, and the epoch is the S that `startStreaming()` returns.
   */
  get currentSeq(): number {
    return this.journal.nextSeq;
  }

  state(): ChangeTrackerState {
    return {
      replication: this.replicationValue,
      mode: this.modeValue,
      consistent: this.consistentValue,
      dirtyBlocks: this.bitmap.dirtyCount,
      dirtyBytes: this.bitmap.dirtyBytes,
      unshippedJournalBytes: this.journal.unshippedBytes,
      hardLimitBytes: this.journal.hardLimitBytes,
      currentSeq: this.journal.nextSeq,
      sealedSegments: this.journal.sealedSegments().length,
    };
  }

  /**
   * A write, zero or trim of `length` bytes at `offset` is about to reach the disk (the
   * filter calls this just before the disk op): undefined, or a promise to wait for, after
   * which its extents are in the durable activity log. Paired with `endWrite`, after `record`.
   */
  beginWrite(offset: number, length: number): Promise<void> | undefined {
    return this.activity.begin(offset, length);
  }

  /** The write `beginWrite` announced is done (recorded, or failed). */
  endWrite(offset: number, length: number): void {
    this.activity.end(offset, length);
  }

  /**
   * Records a completed disk write (the filter calls this after the disk op and before it
   * acknowledges). Never fails because of the journal: any journal trouble turns into a fall
   * back to the bitmap. The record is in the journal (in memory, written to a file when
   * memory runs short or at a clean close) when this resolves; it need not be durable, as
   * its extent is in the activity log until the store has it. `immutable`: the caller never
   * changes the data, which the journal may then keep instead of a copy (WriteOptions).
   */
  async record(kind: RecordKind, offset: number, dataOrLength: WriteData | number, immutable = false): Promise<void> {
    this.checkOpen();
    const length = typeof dataOrLength === 'number' ? dataOrLength : writeDataBytes(dataOrLength);
    if (kind === 'write' && typeof dataOrLength === 'number') throw badInput('data', dataOrLength, 'the written bytes for a write record');
    if (length === 0) return;
    if (this.modeValue === 'bitmap') {
      this.bitmap.mark(offset, length);
      return;
    }
    try {
      const result =
        kind === 'write' ? this.journal.append({ kind, offset, data: dataOrLength as WriteData, immutable }) : this.journal.append({ kind, offset, length });
      if (!result.ok) {
        this.fallBack(`journal reached its hard limit (${result.unshippedBytes} unshipped bytes, limit ${result.hardLimitBytes})`);
        this.bitmap.mark(offset, length);
        return;
      }
      this.activity.recorded(offset, length, result.seq);
      const backlog = this.journal.backlog();
      if (backlog !== undefined) await backlog;
    } catch (err) {
      this.fallBack(`journal failed: ${asFerryError(err).message}`);
      this.bitmap.mark(offset, length);
    }
  }

  /**
   * A disk op failed part way: the range's contents are unknown, so it is marked dirty and
   * the replica is inconsistent until a resync ships it.
   */
  recordFailed(offset: number, length: number): void {
    this.bitmap.mark(offset, length);
    this.setConsistent(false);
  }

  /** Switches to bitmap mode on purpose (seed in transit, link too slow for streaming). */
  async switchToBitmap(reason: string): Promise<void> {
    this.checkOpen();
    this.fallBack(reason);
    await this.switching;
  }

  /**
   * Back to streaming: returns S, the seq the journal restarts at. Writes from here on are
   * journaled from S; the caller must then ship the dirty blocks (`bitmap.takeRuns`) and call
   * `resyncComplete()`. In streaming mode already, returns `currentSeq`.
   */
  async startStreaming(): Promise<number> {
    this.checkOpen();
    await this.switching;
    if (this.modeValue === 'streaming') return this.journal.nextSeq;
    this.modeValue = 'streaming';
    const seq = this.journal.nextSeq;
    await this.persist(false);
    this.logger.info('change tracker streaming', { dir: this.dir, seq, dirtyBytes: this.bitmap.dirtyBytes });
    this.emit('mode', { mode: 'streaming', reason: 'start streaming', seq });
    return seq;
  }

  /**
   * For the resync owed in bitmap mode: the records below this seq were shipped before the
   * fall back and are not in the bitmap, so a replica must apply them before the resync.
   */
  get resyncNeedsSeq(): number {
    return this.needsSeq;
  }

  /**
   * A generation for a new resync: the wall clock in ms, but always above every generation
   * this replication used before, kept in the state file before it is returned, so a clock
   * stepped back (or a restart) can never order a new resync before an old one.
   */
  async newResyncGeneration(): Promise<number> {
    this.checkOpen();
    this.lastResyncGeneration = Math.max(Date.now(), this.lastResyncGeneration + 1);
    await this.persist(false);
    return this.lastResyncGeneration;
  }

  /**
   * The shipper calls this after the resync: the bitmap has been drained and every run it
   * took is durable in the store. Returns whether the tracker is now consistent (streaming,
   * nothing dirty); a write that failed meanwhile, or a new fall back, keeps it false.
   */
  resyncComplete(): boolean {
    if (this.modeValue === 'streaming' && this.bitmap.dirtyCount === 0) {
      this.setConsistent(true);
      void this.advanceReleasedBelow(true); // the state must say consistent, even at the same seq
    }
    return this.consistentValue;
  }

  /** Closes the journal and saves the bitmap; the next open then trusts what it finds. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.switching;
    clearTimeout(this.releasedSave);
    try {
      await this.journal.close();
      await this.persisting; // a save under way may let extents leave the activity log first
      await this.activity.close();
      await writeFileAtomic(join(this.dir, bitmapFile), this.bitmap.serialize());
      await this.persist(true);
    } catch (err) {
      // The state still says "not clean": nothing is lost, the next open resyncs.
      throw new FerryError('io', `change tracker ${this.dir}: could not close cleanly (${asFerryError(err, 'io').message}); the next start resyncs the activity log's extents`, { cause: err });
    }
  }

  /**
   * Consistent and streaming: every record below the journal's first unreleased seq is in
   * the store. Saved (when it moved, or `always`), and then extents whose records are all below
   * it may leave the activity log.
   */
  private async advanceReleasedBelow(always = false): Promise<void> {
    if (!this.consistentValue || this.modeValue !== 'streaming' || this.closed) return;
    const seq = this.journal.firstUnreleasedSeq;
    if (seq <= this.releasedBelow && !always) return;
    this.releasedBelow = Math.max(this.releasedBelow, seq);
    const save = () => this.persist(false).catch((err: unknown) => this.logger.error('change tracker: saving state failed', { dir: this.dir, error: asFerryError(err).message }));
    if (this.releasedSaveDelayMs === 0) await save();
    else if (this.releasedSave === undefined) {
      this.releasedSave = setTimeout(() => {
        this.releasedSave = undefined;
        void save();
      }, this.releasedSaveDelayMs).unref();
    }
  }

  /** Starts a fall back to the bitmap (idempotent while one is under way). */
  private fallBack(reason: string): void {
    if (this.modeValue === 'bitmap' || this.closed) return;
    // What went to the store before this fall back is the replica's to apply first; but if a
    // resync was still owed (not finished: say, its shipper was replaced), the blocks of the
    // earlier fall back are still dirty and the records before it are all it may rely on.
    const owed = !this.consistentValue;
    this.needsSeq = owed ? Math.min(this.needsSeq, this.journal.firstUnreleasedSeq) : this.journal.firstUnreleasedSeq;
    this.modeValue = 'bitmap';
    this.setConsistent(false);
    const seq = this.journal.nextSeq;
    this.logger.warn('change tracker falling back to the dirty bitmap', { dir: this.dir, reason, seq });
    this.switching = this.switching
      .then(() => this.journal.discardAll((range) => this.bitmap.mark(range.offset, range.length), () => this.bitmap.markAll()))
      .catch((err: unknown) => {
        // The journal's ranges are unknown now: only a full resync is safe.
        this.logger.error('change tracker: dropping the journal failed, marking the whole disk dirty', { dir: this.dir, error: asFerryError(err).message });
        this.bitmap.markAll();
      })
      .then(() => this.persist(false))
      .catch((err: unknown) => this.logger.error('change tracker: saving state failed', { dir: this.dir, error: asFerryError(err).message }));
    this.emit('mode', { mode: 'bitmap', reason, seq });
  }

  private setConsistent(consistent: boolean): void {
    if (this.consistentValue === consistent) return;
    // A save begun before this must not let extents leave the activity log (see writeState).
    if (!consistent) this.inconsistencies++;
    this.consistentValue = consistent;
    this.emit('consistent', consistent);
  }

  private checkOpen(): void {
    if (this.closed) throw new FerryError('invalid-state', `change tracker ${this.dir} is closed`);
  }

  /** Saves the state; saves are chained so two never race on the temp file. */
  private persist(clean: boolean): Promise<void> {
    const run = this.persisting.then(() => this.writeState(clean));
    this.persisting = run.catch(() => {});
    return run;
  }

  private async writeState(clean: boolean): Promise<void> {
    const inconsistencies = this.inconsistencies;
    const state: PersistedState = {
      version: 2,
      replication: this.replicationValue,
      clean,
      mode: this.modeValue,
      consistent: this.consistentValue,
      sizeBytes: this.bitmap.sizeBytes,
      blockSizeBytes: this.bitmap.blockSizeBytes,
      ...(this.lastResyncGeneration > 0 ? { resyncGeneration: this.lastResyncGeneration } : {}),
      ...(this.consistentValue ? {} : { resyncNeedsSeq: this.needsSeq }),
      releasedBelow: this.releasedBelow,
    };
    await writeFileAtomic(join(this.dir, stateFile), `${JSON.stringify(state)}\n`);
    // Saved consistent, and still so since: extents whose records are all below the saved
    // releasedBelow may leave the activity log.
    if (state.consistent && inconsistencies === this.inconsistencies) this.activity.evict(state.releasedBelow!);
  }
}

async function readBitmap(dir: string, sizeBytes: number, blockSizeBytes: number): Promise<DirtyBitmap | undefined> {
  const path = join(dir, bitmapFile);
  let bitmap: DirtyBitmap;
  try {
    bitmap = DirtyBitmap.deserialize(await readFile(path), path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  return bitmap.sizeBytes === sizeBytes && bitmap.blockSizeBytes === blockSizeBytes ? bitmap : undefined;
}

async function readState(dir: string): Promise<PersistedState | undefined> {
  const path = join(dir, stateFile);
  const state = (await readJsonFile(path, 'change tracker state')) as (Partial<Omit<PersistedState, 'version'>> & { version?: unknown }) | undefined;
  if (state === undefined) return undefined;
  if (state.version === 1) {
    // Written before replications had an identity: its seqs go on as a new replication,
    // which needs a new base copy or seed at the destination.
    return { ...(state as PersistedState), version: 2, replication: newReplicationId() };
  }
  if (state.version !== 2) throw new FerryError('unsupported-version', `change tracker state ${path}: version ${String(state.version)}, this build reads 1 and 2`);
  if (!isReplicationId(state.replication)) throw new FerryError('checksum-mismatch', `change tracker state ${path} is damaged: replication ${JSON.stringify(state.replication)}`);
  return state as PersistedState;
}
