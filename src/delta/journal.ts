/**
 * The replication log of one disk: append-only segment files in a directory, holding every
 * written extent in write order, each record with a seq (monotonic over the journal's whole
 * life, persisted so it never goes back, even when every segment has been released).
 *
 * Life of a record: `append` copies it into the open segment (synchronously: the seq is the
 * order), in memory. Every `segmentMaxAgeMs` or `segmentMaxBytes` the open segment is rotated
 * (new appends go to a fresh segment at once) and sealed in the background, ready for the
 * delta shipper, which reads it coalesced and `release`s it when the store has it. Seals run
 * one at a time, in seq order. Records reach the disk only when asked: `sync` (and a clean
 * `close`) makes every record so far durable, wherever it is; when the memory held passes
 * `maxMemoryBytes`, `backlog` writes it all to files. So with a shipper that keeps up and a
 * VM that does not flush, journal records never touch the disk.
 *
 * Files in the directory:
 *   open-<firstSeq>.jseg             raw records being appended (see segment-codec.ts)
 *   sealed-<firstSeq>-<lastSeq>.jseg the same, complete, ready to ship (when not in memory)
 *   journal-floor                    the seq floor, in two slots written in turn (seq-floor.ts);
 *                                    it replaces journal-state.json, which is read once
 *
 * Crash recovery (`Journal.open`): a torn tail of an open segment is dropped; an open segment
 * whose records a sealed file already holds (left by version 1, which sealed into a new file)
 * is deleted; an older open segment that was being sealed is sealed again; leftover *.tmp
 * files are deleted.
 */
import { EventEmitter } from 'node:events';
import { readdir, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { FerryError, Logger, asFerryError, badInput, fsyncDirectory, writeDataBytes, type WriteData, makeDirectory } from '../core/index.js';
import type { Extent } from './dirty-bitmap.js';
import { OpenSegment } from './open-segment.js';
import { SealedSegment } from './sealed-segment.js';
import { entryBytes, parseSegmentName } from './segment-codec.js';
import { SeqFloor } from './seq-floor.js';

export type { SealedExtent } from './sealed-segment.js';
export { SealedSegment } from './sealed-segment.js';
export type { RecordKind } from './segment-codec.js';

export interface JournalOptions {
  /** Seal the open segment this long after its first record; 0 turns the timer off. Default 250 ms. */
  segmentMaxAgeMs?: number;
  /** Seal once the open segment holds this many bytes of records. Default 8 MiB. */
  segmentMaxBytes?: number;
  /** `append` refuses a record that would take `unshippedBytes` past this. Default 1 GiB. */
  hardLimitBytes?: number;
  /** Bytes of records held in memory beyond which `backlog()` asks writers to wait. Default 32 MiB. */
  maxMemoryBytes?: number;
  logger?: Logger;
}

export type JournalRecord =
  /** `immutable`: the caller never changes `data`, which may then be kept instead of copied. */
  | { kind: 'write'; offset: number; data: WriteData; immutable?: boolean }
  | { kind: 'zero' | 'trim'; offset: number; length: number };

export type AppendResult =
  | { ok: true; seq: number }
  /** Not appended: the caller decides what to do (the change tracker falls back to the bitmap). */
  | { ok: false; reason: 'hard-limit'; unshippedBytes: number; hardLimitBytes: number };

export interface JournalEvents {
  /** A segment was sealed and is ready to ship. */
  sealed: [segment: SealedSegment];
  /** A background seal failed; the journal refuses appends until `discardAll`. */
  failed: [error: FerryError];
}

export const defaultSegmentMaxAgeMs = 250;
export const defaultSegmentMaxBytes = 8 * 1024 * 1024;
export const defaultJournalHardLimitBytes = 1024 * 1024 * 1024;
export const defaultMaxMemoryBytes = 32 * 1024 * 1024;

export class Journal extends EventEmitter<JournalEvents> {
  private open: OpenSegment;
  /** Rotated segments waiting for (or failed at) sealing, oldest first. */
  private readonly rotating: OpenSegment[] = [];
  private readonly sealed: SealedSegment[] = [];
  /** Sealed segments found damaged when the journal was opened (their records are lost). */
  lostSegments: string[] = [];
  /**
   * Sealed segments whose files are not yet known durable, with the open segment that wrote
   * each (its fd still open). Sealing does not sync: journal records are owed durability at
   * `sync` and at `close`, and a segment shipped and released before then never
   * has to reach the disk at all.
   */
  private readonly unsynced = new Map<SealedSegment, OpenSegment>();
  private nextSeqValue: number;
  /** The durable seq floor (seq-floor.ts). */
  private readonly floorFile: SeqFloor;
  /** The highest floor persistNextSeq was asked for, and the write in progress (or the last one). */
  private requestedNextSeq = 0;
  private persisting: Promise<void> = Promise.resolve();
  private sealChain: Promise<unknown> = Promise.resolve();
  private ageTimer: NodeJS.Timeout | undefined;
  private failure: FerryError | undefined;
  private closed = false;
  private hardLimit: number;
  private readonly segmentMaxAgeMs: number;
  private readonly segmentMaxBytes: number;
  private readonly maxMemoryBytes: number;
  /** The spill `written()` started, while it runs. */
  private spilling: Promise<void> | undefined;
  private readonly logger: Logger;

  private constructor(
    readonly dir: string,
    open: OpenSegment,
    nextSeq: number,
    floorFile: SeqFloor,
    options: JournalOptions,
  ) {
    super();
    this.open = open;
    this.nextSeqValue = nextSeq;
    this.floorFile = floorFile;
    this.segmentMaxAgeMs = checkNonNegative('segmentMaxAgeMs', options.segmentMaxAgeMs ?? defaultSegmentMaxAgeMs);
    this.segmentMaxBytes = checkPositive('segmentMaxBytes', options.segmentMaxBytes ?? defaultSegmentMaxBytes);
    this.hardLimit = checkPositive('hardLimitBytes', options.hardLimitBytes ?? defaultJournalHardLimitBytes);
    this.maxMemoryBytes = checkPositive('maxMemoryBytes', options.maxMemoryBytes ?? defaultMaxMemoryBytes);
    this.logger = options.logger ?? Logger.silent();
  }

  /** Opens (creating if needed) the journal in `dir`, recovering from a crash. */
  static async open(dir: string, options: JournalOptions = {}): Promise<Journal> {
    const logger = options.logger ?? Logger.silent();
    await makeDirectory(dir);
    const floorFile = await SeqFloor.open(dir);
    try {
      return await Journal.recover(dir, floorFile, options, logger);
    } catch (err) {
      await floorFile.close();
      throw err;
    }
  }

  private static async recover(dir: string, floorFile: SeqFloor, options: JournalOptions, logger: Logger): Promise<Journal> {
    let nextSeq = floorFile.floor;
    const names = (await readdir(dir)).sort();
    const sealed: SealedSegment[] = [];
    const lostSegments: string[] = [];
    const openSeqs: number[] = [];
    for (const name of names) {
      if (name.endsWith('.tmp')) {
        await unlink(join(dir, name));
        continue;
      }
      const parsed = parseSegmentName(name);
      if (parsed?.kind === 'sealed') {
        // Renamed but not yet synced when the power went: it may be empty or torn. Its records
        // are lost; the caller learns it (lostSegments) and resyncs what they may have touched.
        const segment = await SealedSegment.load(join(dir, name)).catch((err: unknown) => {
          logger.warn('journal: a sealed segment is damaged (a power loss before it was synced?); its records are lost', { segment: name, error: asFerryError(err).message });
          return undefined;
        });
        if (segment) sealed.push(segment);
        else {
          lostSegments.push(name);
          // Its name still says which seqs it held: they are never given out again.
          nextSeq = Math.max(nextSeq, parsed.lastSeq + 1);
          await unlink(join(dir, name));
        }
      } else if (parsed?.kind === 'open') openSeqs.push(parsed.firstSeq);
    }
    sealed.sort((a, b) => a.firstSeq - b.firstSeq);
    for (const s of sealed) nextSeq = Math.max(nextSeq, s.lastSeq + 1);
    openSeqs.sort((a, b) => a - b);

    const keep: OpenSegment[] = [];
    for (const firstSeq of openSeqs) {
      const segment = await OpenSegment.recover(dir, firstSeq, logger);
      const covered = sealed.some((s) => s.firstSeq <= firstSeq && s.lastSeq >= segment.lastSeq);
      if (segment.records.length > 0 && covered) {
        await segment.destroy();
        continue;
      }
      nextSeq = Math.max(nextSeq, segment.lastSeq + 1, firstSeq);
      keep.push(segment);
    }
    // The newest open file stays open for appends if nothing newer exists; older ones that
    // hold records were mid-seal at the crash and are sealed now.
    let current = keep[keep.length - 1];
    const older = keep.slice(0, -1);
    if (current === undefined || current.firstSeq + current.records.length !== nextSeq) {
      if (current !== undefined) older.push(current);
      current = OpenSegment.create(dir, nextSeq);
    }
    const journal = new Journal(dir, current, nextSeq, floorFile, options);
    journal.lostSegments = lostSegments;
    journal.sealed.push(...sealed);
    for (const segment of older) {
      if (segment.records.length === 0) {
        await segment.destroy();
      } else {
        journal.rotating.push(segment);
        await journal.chainSeal(segment);
      }
    }
    if (current.records.length > 0) journal.startAgeTimer();
    logger.debug('journal opened', { dir, nextSeq, sealedSegments: sealed.length, openRecords: current.records.length });
    return journal;
  }

  /** The lowest seq not yet released (shipped): every record below it is in the store. */
  get firstUnreleasedSeq(): number {
    const held = [...this.sealed.map((s) => s.firstSeq), ...[...this.rotating, this.open].filter((s) => s.records.length > 0).map((s) => s.firstSeq)];
    return Math.min(this.nextSeqValue, ...held);
  }

  /** The seq the next appended record will get. */
  get nextSeq(): number {
    return this.nextSeqValue;
  }

  /** Bytes of records not yet released: the open and sealing segments' records, sealed files. */
  get unshippedBytes(): number {
    let bytes = this.open.recordBytes;
    for (const r of this.rotating) bytes += r.recordBytes;
    for (const s of this.sealed) bytes += s.sizeBytes;
    return bytes;
  }

  get hardLimitBytes(): number {
    return this.hardLimit;
  }

  set hardLimitBytes(bytes: number) {
    this.hardLimit = checkPositive('hardLimitBytes', bytes);
  }

  /**
   * Appends a record: copied into memory (the caller keeps its buffer), or kept as it is when
   * large and `immutable` (see OpenSegment.append). It reaches a file when
   * `sync`, `close` or `written` asks, or when the memory it holds is needed (`backlog`).
   */
  append(record: JournalRecord): AppendResult {
    this.checkUsable();
    const length = record.kind === 'write' ? writeDataBytes(record.data) : record.length;
    if (!Number.isSafeInteger(record.offset) || record.offset < 0) throw badInput('offset', record.offset, 'a non-negative whole number of bytes');
    if (!Number.isSafeInteger(length) || length < 0) throw badInput('length', length, 'a non-negative whole number of bytes');
    const bytes = entryBytes(record.kind, length);
    const unshipped = this.unshippedBytes;
    if (unshipped + bytes > this.hardLimit) return { ok: false, reason: 'hard-limit', unshippedBytes: unshipped, hardLimitBytes: this.hardLimit };
    const seq = this.nextSeqValue++;
    if (record.kind === 'write') this.open.append(seq, record.kind, record.offset, length, record.data, record.immutable);
    else this.open.append(seq, record.kind, record.offset, length);
    if (this.open.recordBytes >= this.segmentMaxBytes) this.sealInBackground();
    else if (this.open.records.length === 1) this.startAgeTimer();
    return { ok: true, seq };
  }

  /** Bytes of records held in memory: appended and not yet written, or sealed and not yet spilled. */
  get memoryBytes(): number {
    let bytes = this.open.unwrittenBytes;
    for (const r of this.rotating) bytes += r.unwrittenBytes;
    for (const s of this.sealed) bytes += s.memoryBytes;
    return bytes;
  }

  /**
   * Undefined while the journal holds less than `maxMemoryBytes` of records in memory; past
   * that, a promise that resolves once they are written to files. Writers wait for it, so a
   * shipper slower than the VM's writes cannot fill memory.
   */
  backlog(): Promise<void> | undefined {
    return this.memoryBytes < this.maxMemoryBytes ? undefined : this.written();
  }

  /** Writes every record held in memory to its file (not yet durable: see `sync`). */
  written(): Promise<void> {
    this.spilling ??= (async () => {
      try {
        await Promise.all([this.open, ...this.rotating].map((s) => s.writeQueued()));
        for (const segment of this.sealed) await segment.spill();
      } finally {
        this.spilling = undefined;
      }
    })();
    return this.spilling;
  }

  /** Makes every record appended so far durable. */
  async sync(): Promise<void> {
    this.checkUsable();
    try {
      await this.sealsQueued();
      await this.syncAll();
    } catch (err) {
      throw asFerryError(err, 'io');
    }
  }

  /**
   * Waits for every seal queued so far, and for any queued meanwhile (seals are quick). Then,
   * until the next await, each record is in the open segment or a sealed one, none in between.
   */
  private async sealsQueued(): Promise<void> {
    for (let chain = this.sealChain; ; chain = this.sealChain) {
      await chain;
      if (chain === this.sealChain) return;
    }
  }

  /**
   * Syncs the open and rotating segments and the sealed files not yet synced (closing their
   * writers after), and spills the sealed segments held in memory, durably.
   */
  private async syncAll(): Promise<void> {
    // An empty open segment whose file could not be made (the file system was full) is made
    // again: space may be back, and it would report its old failure for good.
    if (this.open.records.length === 0 && this.open.broken) {
      await this.open.destroy().catch(() => {});
      this.open = OpenSegment.create(this.dir, this.nextSeqValue);
    }
    const unsynced = [...this.unsynced];
    const inMemory = this.sealed.filter((s) => s.memoryBytes > 0);
    // Synchronously from here: each sync() marks its segment, so that a seal starting now
    // goes through the file this sync is making durable.
    await Promise.all([
      ...[this.open, ...this.rotating, ...unsynced.map(([, writer]) => writer)].map((s) => s.sync()),
      ...inMemory.map((s) => s.spill()),
    ]);
    if (inMemory.length > 0) await fsyncDirectory(this.dir);
    for (const [key, writer] of unsynced) {
      if (this.unsynced.delete(key)) await writer.close();
    }
  }

  /** Forgets that a sealed segment was not synced: it is being deleted. */
  private async dropUnsynced(segment: SealedSegment): Promise<void> {
    const writer = this.unsynced.get(segment);
    if (writer === undefined) return;
    this.unsynced.delete(segment);
    await writer.close().catch(() => {});
  }

  /**
   * Seals the open segment now (cutover calls this with the source quiesced) and resolves
   * with it once sealed, after every earlier seal; undefined if the open segment was empty.
   */
  seal(): Promise<SealedSegment | undefined> {
    this.checkUsable();
    const segment = this.rotate();
    if (segment === undefined) return this.sealChain.then(() => this.throwIfFailed());
    return this.chainSeal(segment);
  }

  /** Sealed, unreleased segments in seq order. */
  sealedSegments(): SealedSegment[] {
    return [...this.sealed];
  }

  /** Deletes a segment once the store has it. Releasing out of seq order is allowed. */
  async release(segment: SealedSegment): Promise<void> {
    const index = this.sealed.indexOf(segment);
    if (index === -1) {
      if (segment.retired !== undefined) return; // already released, or dropped for the bitmap
      throw new FerryError('not-found', `journal ${this.dir}: segment ${segment.name} is not one of its sealed segments`);
    }
    this.sealed.splice(index, 1);
    segment.retired = 'released';
    await segment.settled();
    const inFile = segment.memoryBytes === 0; // one still in memory never had a file
    segment.recycle();
    await this.dropUnsynced(segment);
    // The sealed file's name carried the seq floor; once it is gone the floor file must.
    await this.persistNextSeq(segment.lastSeq + 1);
    if (!inFile) return;
    await unlink(segment.path).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw asFerryError(err, 'io');
    });
  }

  /**
   * Makes sure no seq up to `lastSeq` is given out again, even after a power loss: the
   * shipper calls this before it stores a delta of those seqs. A segment shipped from memory
   * leaves no file named after them, so the floor file must say it first.
   */
  reserveSeqsThrough(lastSeq: number): Promise<void> {
    return this.persistNextSeq(lastSeq + 1);
  }

  /**
   * Drops every unreleased record, open or sealed, calling `onRange` with each range they
   * covered (so the tracker can mark them dirty), or `onUnknown` for a sealed segment too
   * damaged to read its ranges from (a power loss before it was synced). Seqs continue where
   * they were. Clears a failed state: the journal starts again with a fresh, empty open segment.
   */
  discardAll(onRange: (range: Extent) => void, onUnknown: () => void): Promise<void> {
    this.clearAgeTimer();
    const run = this.sealChain.then(async () => {
      // An empty open segment stays (its file name is the next seq); one with records goes.
      const segments = [...(this.open.records.length > 0 ? [this.open] : []), ...this.rotating];
      this.rotating.length = 0;
      if (this.open.records.length > 0) this.open = OpenSegment.create(this.dir, this.nextSeqValue);
      for (const segment of segments) {
        for (const r of segment.records) onRange({ offset: r.offset, length: r.length });
        await segment.destroy();
      }
      const sealed = this.sealed.splice(0);
      for (const segment of sealed) {
        const ranges = await segment.readRanges().catch((err: unknown) => {
          this.logger.warn('journal: a sealed segment is damaged; what it held is unknown', { segment: segment.name, error: asFerryError(err).message });
          onUnknown();
          return [];
        });
        segment.retired = 'discarded';
        await segment.settled();
        await this.dropUnsynced(segment);
        for (const range of ranges) onRange(range);
        await unlink(segment.path).catch(() => {});
      }
      await this.persistNextSeq(this.nextSeqValue);
      this.failure = undefined;
    });
    this.sealChain = run.catch(() => {});
    return run;
  }

  /** Stops the timer, finishes seals, makes every segment durable and closes files. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.clearAgeTimer();
    await this.sealChain;
    try {
      if (this.failure === undefined) await this.syncAll();
    } finally {
      for (const segment of [this.open, ...this.rotating, ...this.unsynced.values()]) await segment.close().catch(() => {});
      this.unsynced.clear();
      await this.persisting;
      await this.floorFile.close();
    }
  }

  private rotate(): OpenSegment | undefined {
    this.clearAgeTimer();
    if (this.open.records.length === 0) return undefined;
    const old = this.open;
    this.open = OpenSegment.create(this.dir, this.nextSeqValue);
    this.rotating.push(old);
    return old;
  }

  private chainSeal(segment: OpenSegment): Promise<SealedSegment | undefined> {
    const run = this.sealChain.then(async () => {
      // Dropped by a discardAll queued before this seal: its ranges went to the bitmap.
      if (!this.rotating.includes(segment)) return undefined;
      this.throwIfFailed();
      try {
        const sealed = await segment.seal();
        this.sealed.push(sealed);
        if (sealed.memoryBytes === 0) this.unsynced.set(sealed, segment); // in its file, renamed, not yet synced
        this.rotating.splice(this.rotating.indexOf(segment), 1);
        this.logger.debug('journal segment sealed', { segment: sealed.name, records: segment.records.length, sizeBytes: sealed.sizeBytes });
        this.emit('sealed', sealed);
        return sealed;
      } catch (err) {
        // A later segment must not be sealed (and shipped) before this one: stop here.
        this.failure = asFerryError(err, 'io');
        this.logger.error('journal: sealing failed', { segment: segment.path, error: this.failure.message });
        this.emit('failed', this.failure);
        throw this.failure;
      }
    });
    this.sealChain = run.catch(() => {});
    return run;
  }

  private sealInBackground(): void {
    const segment = this.rotate();
    // Failures are recorded in `failure` and reported through the 'failed' event.
    if (segment !== undefined) this.chainSeal(segment).catch(() => {});
  }

  private startAgeTimer(): void {
    if (this.segmentMaxAgeMs === 0 || this.ageTimer !== undefined || this.closed) return;
    this.ageTimer = setTimeout(() => {
      this.ageTimer = undefined;
      if (!this.closed && this.failure === undefined) this.sealInBackground();
    }, this.segmentMaxAgeMs);
    this.ageTimer.unref();
  }

  private clearAgeTimer(): void {
    if (this.ageTimer !== undefined) clearTimeout(this.ageTimer);
    this.ageTimer = undefined;
  }

  /**
   * Raises the persisted seq floor (files carry seqs in their names; this covers the time
   * when none is left, and a segment shipped from memory never had one). Before a segment
   * ships, and on release, it is the segment's lastSeq + 1, not the next seq: records
   * in the open segment carry their own seqs, and if a crash tears them off, seqs continue
   * right after the last complete record.
   */
  private persistNextSeq(floor: number): Promise<void> {
    if (floor > this.requestedNextSeq) this.requestedNextSeq = floor;
    // One write at a time: they alternate between two slots, and a write that started earlier
    // with a lower floor must not land after a higher one (seqs would go back after a restart).
    // Each writes the highest floor asked for so far, so a burst of releases costs one or
    // two writes, not one each.
    const run = this.persisting.then(async () => {
      const floorNow = this.requestedNextSeq;
      if (floorNow > this.floorFile.floor) await this.floorFile.write(floorNow);
    });
    this.persisting = run.catch(() => {}); // a failed write fails its callers; the next one tries again
    return run;
  }

  private checkUsable(): void {
    if (this.closed) throw new FerryError('invalid-state', `journal ${this.dir} is closed`);
    this.throwIfFailed();
  }

  private throwIfFailed(): undefined {
    if (this.failure !== undefined) throw new FerryError(this.failure.code, `journal ${this.dir} has failed: ${this.failure.message}`, { cause: this.failure });
    return undefined;
  }
}

function checkPositive(field: string, value: number): number {
  if (!Number.isSafeInteger(value) || value <= 0) throw badInput(field, value, 'a positive whole number');
  return value;
}

function checkNonNegative(field: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 0) throw badInput(field, value, 'a non-negative whole number');
  return value;
}
