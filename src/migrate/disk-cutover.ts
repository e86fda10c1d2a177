/**
 * Disk-level cutover (DESIGN.md invariant 7, for one disk): quiesce the filter (hold new IO,
 * wait for in-flight IO), seal and ship the final delta, apply it at the replica, verify, and
 * report how long the source was paused. On any failure the source resumes and the error
 * is passed on; on success the source stays paused, since it must never run again beside
 * the destination.
 */
import { FerryError, FileDevice, asFerryError, type BlockDevice } from '../core/index.js';
import type { CaptureFilter, ChangeTracker } from '../delta/index.js';
import type { DeltaShipper } from './delta-shipper.js';
import type { ReplicaApplier } from './replica-applier.js';
import { compareDisks } from './verify.js';

export interface DiskCutoverParts {
  filter: CaptureFilter;
  tracker: ChangeTracker;
  shipper: DeltaShipper;
  applier: ReplicaApplier;
  /** The source disk under the filter, read for a full verification. */
  source: BlockDevice;
}

export interface DiskCutoverOptions {
  /**
   * 'full' compares the whole replica with the paused source (reads both disks: for tests
   * and the cautious); 'deltas' relies on every delta's checksum and the replay reaching
   * the final seq (the default: the pause then does not grow with the disk).
   */
  verify?: 'full' | 'deltas';
  signal?: AbortSignal;
}

export interface DiskCutoverResult {
  finalSeq: number;
  /** Source paused until the replica was applied and verified. */
  pauseMs: number;
  /** How long the final shipment and apply took, within the pause. */
  drainMs: number;
  applyMs: number;
  verifyMs: number;
  verified: 'full' | 'deltas';
}

export async function cutoverDisk(parts: DiskCutoverParts, options: DiskCutoverOptions = {}): Promise<DiskCutoverResult> {
  const { filter, tracker, shipper, applier } = parts;
  const verify = options.verify ?? 'deltas';
  const pausedAt = performance.now();
  await filter.quiesce();
  try {
    const drainStarted = performance.now();
    await shipper.drain(options.signal);
    const finalSeq = tracker.currentSeq;
    if (tracker.mode !== 'streaming' || !tracker.consistent || tracker.journal.sealedSegments().length > 0) {
      throw new FerryError('invalid-state', `cutover: the source still has unshipped changes after the final drain (mode ${tracker.mode})`);
    }
    const applyStarted = performance.now();
    await applier.applyUntil(finalSeq, { signal: options.signal });
    const verifyStarted = performance.now();
    if (verify === 'full') {
      const replica = await FileDevice.open(applier.replicaPath, { readOnly: true });
      try {
        const result = await compareDisks(parts.source, replica, { signal: options.signal });
        if (!result.identical) throw new FerryError('checksum-mismatch', `cutover: replica ${applier.replicaPath} differs from the source: ${result.reason}`);
      } finally {
        await replica.close();
      }
    }
    const done = performance.now();
    return {
      finalSeq,
      pauseMs: done - pausedAt,
      drainMs: applyStarted - drainStarted,
      applyMs: verifyStarted - applyStarted,
      verifyMs: done - verifyStarted,
      verified: verify,
    };
  } catch (err) {
    filter.resume();
    throw asFerryError(err);
  }
}
