/**
 * The capture filter: a BlockDevice decorator over the disk that tells the change tracker
 * about every write, like an nbdkit filter changes only what it must. For each write, zero
 * and trim (docs/DESIGN.md invariants 2 and 3):
 *
 *   1. wait until no earlier overlapping IO is in flight (journal order = disk order);
 *   2. wait until its extents are in the tracker's activity log, then do the disk op (with
 *      FUA if asked);
 *   3. record it in the tracker, after the disk op completed and before acknowledging;
 *   4. release the range, then delay the acknowledgement if backpressure says so.
 *
 * FUA and `flush()` make the disk durable, not the journal: after an unclean stop the
 * tracker drops its journal and resyncs the activity log's extents, where every write lies
 * whose record had not reached the store (docs/DESIGN.md invariants 2 and 13).
 *
 * Reads pass through. `quiesce()` holds new IO and resolves once in-flight IO is done (like
 * nbdkit's pause filter), for cutover. `fence()` refuses all IO but flushes, held IO
 * included: after a cutover, the source must never run beside the destination (invariant 7).
 *
 * The filter does not own the tracker: closing it closes the disk only.
 */
import { FerryError, writeDataBytes, type BlockDevice, type FlushOptions, type WriteData, type WriteOptions } from '../core/index.js';
import type { Backpressure } from './backpressure.js';
import type { ChangeTracker } from './change-tracker.js';
import type { RecordKind } from './journal.js';
import { OverlapQueue } from './overlap-queue.js';

export interface CaptureFilterOptions {
  /** Delays acknowledgements when the journal is above its high-water mark. */
  backpressure?: Backpressure;
}

export class CaptureFilter implements BlockDevice {
  private readonly overlaps = new OverlapQueue();
  private inFlightCount = 0;
  private paused: { resumed: Promise<void>; resume: () => void } | undefined;
  private drainWaiters: (() => void)[] = [];
  private fenceError: FerryError | undefined;
  private readonly backpressure: Backpressure | undefined;

  constructor(
    private readonly inner: BlockDevice,
    readonly tracker: ChangeTracker,
    options: CaptureFilterOptions = {},
  ) {
    if (tracker.sizeBytes !== inner.sizeBytes) {
      throw new FerryError('bad-input', `capture filter: tracker is for ${tracker.sizeBytes} bytes, disk has ${inner.sizeBytes}`);
    }
    this.backpressure = options.backpressure;
  }

  get sizeBytes(): number {
    return this.inner.sizeBytes;
  }

  get readOnly(): boolean {
    return this.inner.readOnly;
  }

  /** IOs admitted and not yet done (the backpressure delay after an IO does not count). */
  get inFlight(): number {
    return this.inFlightCount;
  }

  get quiesced(): boolean {
    return this.paused !== undefined;
  }

  get fenced(): boolean {
    return this.fenceError !== undefined;
  }

  read(buf: Uint8Array, offset: number): Promise<void> {
    if (this.paused !== undefined || this.fenceError !== undefined) return this.heldRead(buf, offset);
    // Not quiesced (the usual case): straight through, one promise, no async frame.
    this.inFlightCount++;
    let op: Promise<void>;
    try {
      op = this.inner.read(buf, offset);
    } catch (err) {
      this.leave();
      return Promise.reject(err as Error);
    }
    return op.then(this.leaveOk, this.leaveFailed);
  }

  write(data: WriteData, offset: number, options?: WriteOptions): Promise<void> {
    return this.mutate('write', offset, writeDataBytes(data), data, options);
  }

  writeZeroes(offset: number, length: number, options?: WriteOptions): Promise<void> {
    return this.mutate('zero', offset, length, undefined, options);
  }

  trim(offset: number, length: number, options?: WriteOptions): Promise<void> {
    return this.mutate('trim', offset, length, undefined, options);
  }

  /**
   * Every write completed before the call is durable on the disk. A flush passes even while
   * quiesced: it changes no data, and a paused VM being shut down after cutover flushes its
   * disk and must not hang on it.
   */
  flush(options?: FlushOptions): Promise<void> {
    return this.inner.flush(options);
  }

  /**
   * Holds new IO (it waits, it is not refused) and resolves once every IO admitted before
   * has completed, its record included. Idempotent.
   */
  async quiesce(): Promise<void> {
    if (this.paused === undefined) {
      let resume!: () => void;
      const resumed = new Promise<void>((resolve) => (resume = resolve));
      this.paused = { resumed, resume };
    }
    if (this.inFlightCount === 0) return;
    await new Promise<void>((resolve) => this.drainWaiters.push(resolve));
  }

  /** Lets held and new IO through again. */
  resume(): void {
    const paused = this.paused;
    this.paused = undefined;
    paused?.resume();
  }

  /**
   * Refuses every IO but FLUSH from now on, held IO included, with 'invalid-state' and
   * `message` (which should say why and how to release the disk). Call it quiesced, so that
   * no IO is in flight.
   */
  fence(message: string): void {
    this.fenceError = new FerryError('invalid-state', message);
    this.resume(); // held IO wakes up, and is refused
  }

  unfence(): void {
    this.fenceError = undefined;
  }

  async close(): Promise<void> {
    await this.inner.close();
  }

  private async mutate(
    kind: RecordKind,
    offset: number,
    length: number,
    data: WriteData | undefined,
    options: WriteOptions | undefined,
  ): Promise<void> {
    if (this.inner.readOnly) throw new FerryError('invalid-state', 'capture filter: the disk is read-only');
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.sizeBytes) {
      throw new FerryError('bad-input', `capture filter: range ${offset}+${length} is outside the disk (${this.sizeBytes} bytes)`);
    }
    // Take a place in the overlap order now, in call order, even if quiesced: the order in
    // which the VM's requests reached us is the order overlapping ones hit the disk.
    const ticket = this.overlaps.enqueue(offset, length);
    // Not quiesced (the usual case): admitted at once, without a promise hop.
    if (this.paused === undefined && this.fenceError === undefined) this.inFlightCount++;
    else {
      try {
        await this.enter();
      } catch (err) {
        ticket.release();
        throw err;
      }
    }
    try {
      if (ticket.ready !== undefined) await ticket.ready;
      const logged = this.tracker.beginWrite(offset, length);
      try {
        if (logged !== undefined) await logged;
        try {
          await this.diskOp(kind, offset, length, data, options);
        } catch (err) {
          // The range may be partly written: whatever it holds now must be shipped.
          this.tracker.recordFailed(offset, length);
          throw err;
        }
        await this.tracker.record(kind, offset, data ?? length, options?.immutable === true);
      } finally {
        this.tracker.endWrite(offset, length);
      }
    } finally {
      ticket.release();
      this.leave();
    }
    if (this.backpressure) await this.backpressure.delay();
  }

  private diskOp(kind: RecordKind, offset: number, length: number, data: WriteData | undefined, options: WriteOptions | undefined): Promise<void> {
    if (kind === 'write') return this.inner.write(data!, offset, options);
    if (kind === 'zero') return this.inner.writeZeroes(offset, length, options);
    return this.inner.trim(offset, length, options);
  }

  private async heldRead(buf: Uint8Array, offset: number): Promise<void> {
    await this.enter();
    try {
      await this.inner.read(buf, offset);
    } finally {
      this.leave();
    }
  }

  private readonly leaveOk = (): void => this.leave();

  private readonly leaveFailed = (err: unknown): never => {
    this.leave();
    throw err;
  };

  private async enter(): Promise<void> {
    while (this.paused !== undefined) await this.paused.resumed;
    if (this.fenceError !== undefined) throw this.fenceError;
    this.inFlightCount++;
  }

  private leave(): void {
    this.inFlightCount--;
    if (this.inFlightCount === 0 && this.drainWaiters.length > 0) {
      const waiters = this.drainWaiters;
      this.drainWaiters = [];
      for (const resolve of waiters) resolve();
    }
  }
}
