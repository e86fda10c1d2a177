/**
 * Disk-level cutover (DESIGN.md invariant 7, for one disk): quiesce the source (hold new IO,
 * wait for in-flight IO), seal and ship the final delta, apply it at the replica, verify,
 * and report how long the source was paused. On any failure the source resumes and the
 * error is passed on; on success the source stays paused, since it must never run again
 * beside the destination.
 *
 * The cutover sees the two sides through small ports, so the source may be in this process
 * (DiskReplication) or in a `ferry filter` reached over its control socket.
 */
import { FerryError, asFerryError } from '../core/index.js';
import type { DiskComparison } from './verify.js';

/** The source side of one disk. */
export interface CutoverSource {
  /** Holds new IO and resolves once every IO in flight has completed. */
  quiesce(): Promise<void>;
  resume(): Promise<void>;
  /**
   * Called quiesced: seals the journal and ships everything (a resync too, if one is owed).
   * Resolves with the seq replay must reach for the replica to equal the source.
   */
  drainFinal(signal?: AbortSignal): Promise<number>;
}

/** The destination side of one disk. */
export interface CutoverReplica {
  /** Applies deltas until every record below `seq` is applied and the replica is consistent. */
  applyUntil(seq: number, options: { signal?: AbortSignal }): Promise<void>;
}

export interface DiskCutoverParts {
  source: CutoverSource;
  replica: CutoverReplica;
  /** Compares replica and (paused) source byte for byte, for verify 'full'. */
  compare?: (signal?: AbortSignal) => Promise<DiskComparison>;
}

export interface DiskCutoverOptions {
  /**
   * 'full' compares the whole replica with the paused source (reads both disks: for tests
   * and the cautious); 'deltas' relies on every delta's checksum and on replay reaching the
   * final seq (the default: the pause then does not grow with the disk's size).
   */
  verify?: 'full' | 'deltas';
  signal?: AbortSignal;
}

export interface DiskCutoverResult {
  finalSeq: number;
  /** Source paused until the replica was applied and verified. */
  pauseMs: number;
  /** Parts of the pause: shipping the final delta, applying it, verifying. */
  drainMs: number;
  applyMs: number;
  verifyMs: number;
  verified: 'full' | 'deltas';
}

export async function cutoverDisk(parts: DiskCutoverParts, options: DiskCutoverOptions = {}): Promise<DiskCutoverResult> {
  const verify = options.verify ?? 'deltas';
  if (verify === 'full' && !parts.compare) throw new FerryError('bad-input', 'verify: "full" needs access to both disks');
  const pausedAt = performance.now();
  await parts.source.quiesce();
  try {
    const finalSeq = await parts.source.drainFinal(options.signal);
    const applyStarted = performance.now();
    await parts.replica.applyUntil(finalSeq, { signal: options.signal });
    const verifyStarted = performance.now();
    if (verify === 'full') {
      const result = await parts.compare!(options.signal);
      if (!result.identical) throw new FerryError('checksum-mismatch', `cutover: the replica differs from the source: ${result.reason}`);
    }
    const done = performance.now();
    return {
      finalSeq,
      pauseMs: done - pausedAt,
      drainMs: applyStarted - pausedAt,
      applyMs: verifyStarted - applyStarted,
      verifyMs: done - verifyStarted,
      verified: verify,
    };
  } catch (err) {
    await parts.source.resume();
    throw asFerryError(err);
  }
}
