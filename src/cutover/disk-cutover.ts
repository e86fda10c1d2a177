/**
 * Disk-level cutover (invariant 7, for one disk): quiesce the source (hold new IO, wait for
 * in-flight IO), seal and ship the final delta, apply it at the replica, verify, then
 * commit: fence the source durably and mark the replication cut over in the store.
 *
 * Before the commit point (the fence) any failure resumes the source and passes the error
 * on. After it there is no way back but an operator's deliberate release of the fence: the
 * source refuses IO from then on, so it never runs beside the destination. Marking the store
 * comes after the fence (a mark must never outlive a rolled-back cutover); if it fails, the
 * cutover still stands and says so in `warnings`.
 *
 * The cutover sees the two sides through small ports, so the source may be in this process
 * (DiskReplication) or in a `ferry filter` reached over its control socket.
 */
import { FerryError, asFerryError, type DiskDigest } from '../core/index.js';

/** The source side of one disk. */
export interface CutoverSource {
  /** Holds new IO and resolves once every IO in flight has completed. */
  quiesce(): Promise<void>;
  resume(): Promise<void>;
  /** Called quiesced: seals the journal and ships everything (a resync too, if one is owed). */
  drainFinal(signal?: AbortSignal): Promise<FinalDrain>;
  /** The commit point: called quiesced; refuses the disk's IO from now on, durably. */
  fence(finalSeq: number, signal?: AbortSignal): Promise<void>;
  /** SHA-256 of the whole (paused) source disk, for verify 'full'. */
  hash(signal?: AbortSignal): Promise<DiskDigest>;
}

/** What the final drain shipped. */
export interface FinalDrain {
  /** The seq replay must reach for the replica to equal the source. */
  finalSeq: number;
  /** Bytes of the final deltas. */
  bytes: number;
}

/** The destination side of one disk. */
export interface CutoverReplica {
  /** Applies deltas until every record below `seq` is applied and the replica is consistent. */
  applyUntil(seq: number, options: { signal?: AbortSignal }): Promise<void>;
  /** After the fence: marks the replication cut over in the store and tidies its deltas. */
  commitCutover(finalSeq: number, verified: 'full' | 'deltas', signal?: AbortSignal): Promise<void>;
  /** SHA-256 of the whole replica, for verify 'full'. */
  hash(signal?: AbortSignal): Promise<DiskDigest>;
}

export interface DiskCutoverParts {
  source: CutoverSource;
  replica: CutoverReplica;
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
  /** Source paused until the commit: from quiesce to fence. */
  pauseMs: number;
  /** Parts of the pause: shipping the final delta, applying it, verifying, fencing. */
  drainMs: number;
  applyMs: number;
  verifyMs: number;
  commitMs: number;
  verified: 'full' | 'deltas';
  /** What went wrong after the commit point (the cutover stands). */
  warnings: string[];
}

export async function cutoverDisk(parts: DiskCutoverParts, options: DiskCutoverOptions = {}): Promise<DiskCutoverResult> {
  const verify = options.verify ?? 'deltas';
  const pausedAt = performance.now();
  let finalSeq: number;
  let applyStarted: number, verifyStarted: number, commitStarted: number;
  try {
    await parts.source.quiesce();
  } catch (err) {
    // Refused (another cutover holds the source, or it is fenced): nothing to undo.
    if (asFerryError(err).code === 'conflict') throw err;
    // Anything else may have taken effect half-way: undone below.
    return rollBack(parts, err);
  }
  try {
    ({ finalSeq } = await parts.source.drainFinal(options.signal));
    applyStarted = performance.now();
    await parts.replica.applyUntil(finalSeq, { signal: options.signal });
    verifyStarted = performance.now();
    if (verify === 'full') await verifyWhole(parts.source, parts.replica, options.signal);
    commitStarted = performance.now();
    await parts.source.fence(finalSeq, options.signal);
  } catch (err) {
    return rollBack(parts, err);
  }
  const committed = performance.now();
  const warnings: string[] = [];
  try {
    await parts.replica.commitCutover(finalSeq, verify, options.signal);
  } catch (err) {
    warnings.push(`the source is fenced and the replica complete, but marking the replication cut over in the store failed: ${asFerryError(err).message}`);
  }
  return {
    finalSeq,
    pauseMs: committed - pausedAt,
    drainMs: applyStarted - pausedAt,
    applyMs: verifyStarted - applyStarted,
    verifyMs: commitStarted - verifyStarted,
    commitMs: committed - commitStarted,
    verified: verify,
    warnings,
  };
}

/** verify 'full': both whole disks hashed at once; any difference fails the cutover. */
export async function verifyWhole(sourceDisk: Pick<CutoverSource, 'hash'>, replicaDisk: Pick<CutoverReplica, 'hash'>, signal?: AbortSignal): Promise<DiskDigest> {
  const [source, replica] = await Promise.all([sourceDisk.hash(signal), replicaDisk.hash(signal)]);
  if (source.sizeBytes !== replica.sizeBytes) {
    throw new FerryError('checksum-mismatch', `the replica differs from the source: sizes differ (source ${source.sizeBytes}, replica ${replica.sizeBytes} bytes)`);
  }
  if (source.sha256 !== replica.sha256) {
    throw new FerryError('checksum-mismatch', `the replica differs from the source: SHA-256 ${replica.sha256}, source ${source.sha256}`);
  }
  return source;
}

/** Before the commit point: resumes the source and throws `err`, saying whether it resumed. */
async function rollBack(parts: DiskCutoverParts, err: unknown): Promise<never> {
  const error = asFerryError(err);
  try {
    await parts.source.resume();
  } catch (resumeErr) {
    throw new FerryError(error.code, `cutover failed, and resuming the source failed too (it may still be paused): ${error.message}; resume: ${asFerryError(resumeErr).message}`, {
      cause: err,
    });
  }
  throw new FerryError(error.code, `cutover failed, the source was resumed: ${error.message}`, { cause: err });
}
