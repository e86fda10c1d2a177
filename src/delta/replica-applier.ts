/**
 * The replica applier: keeps a destination disk warm. It starts from a base (a restored
 * manifest, whose epoch says where replay begins) and applies the disk's deltas from the
 * store in replay order, each verified in full before a byte of it is written (invariant 6).
 *
 * Progress is a small state file beside the replica (`<replica>.ferry-replica.json`),
 * written after the replica is flushed, once for a group of deltas (up to 256, or 64 MiB).
 * Applying a delta is idempotent (it writes absolute contents), so a crash before the
 * state write only means the group is applied again. Up to 16 deltas (64 MiB) are read and
 * verified ahead of their turn, on a worker thread, and a group's commit runs while the next
 * group is applied: reading the store, verifying, writing the replica and flushing it overlap.
 *
 * One replication, one applier (invariant 9): the state names the replication the base
 * belongs to, and only that replication's deltas are listed and applied. An applier holds
 * the replica's lock (core's ProcessLock) from open to close, so no second process applies
 * to the same replica; a follower may hand the lock to a cutover and take it back after.
 * A replication marked cut over in the store is followed up to its final seq, then never
 * again.
 *
 * Replay order (docs/DESIGN.md, "Two ways to track, one replay"):
 * - journal deltas continue from `nextSeq`: one whose seqs end below it is skipped (it is
 *   older than the base or already applied); one that starts at or below it is applied.
 * - a gap before the next journal delta means the source fell back to its bitmap: the
 *   resync at S (pieces 0, 1, ... up to the final one) is applied, then replay continues
 *   from S. A resync left unfinished by a crash of the source is superseded by the next
 *   one, which carries every block the first did not ship.
 * - the replica is consistent (crash-consistent at a segment boundary) except while a
 *   resync is under way and until replay passes the seq at which its last read was made.
 */
import { readFile, realpath } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { BufferPool, ChunkHasher, FerryError, FileDevice, asFerryError, Logger, ProcessLock, checkReplicationId, hashDisk, throwIfAborted, writeFileAtomic, type DiskDigest } from '../core/index.js';
import { checkDiskId, type Repository } from '../store/index.js';
import type { Delta, DeltaName } from './delta-codec.js';
import { deleteDelta, getDelta, listDeltas } from './delta-objects.js';

const stateVersion = 2;

/** Zero extents from this size on are applied as holes. */
const holeMinBytes = 1024 * 1024;
/** A group of applied deltas is committed (replica flushed, state written) at this many deltas or bytes. */
const commitEveryDeltas = 256;
const commitEveryBytes = 64 * 1024 * 1024;
/**
 * Deltas read (and verified) ahead of the one being applied, so that reading the store
 * overlaps writing the replica: up to this many small ones (their hashes go to the worker
 * in groups, see ReadAhead)...
 */
const readAheadDeltas = 16;
/** ...and about this many bytes of them, judged by the size of the last delta read (8 journal segments). */
const readAheadBytes = 64 * 1024 * 1024;
/**
 * Deltas are read into buffers of this size, shared memory that only what a delta fills
 * takes up: a journal segment or resync piece is about 8 MiB at most, and a larger delta is
 * read into a buffer of its own.
 */
const readBufferBytes = 16 * 1024 * 1024;

export interface ReplicaState {
  version: typeof stateVersion;
  diskId: string;
  /** The replication the base belongs to: only its deltas are applied. */
  replication: string;
  manifestId: string;
  epoch: number;
  /** Every journal record with a smaller seq is applied (or superseded by a resync). */
  nextSeq: number;
  /** A resync being applied: its S, generation and the next piece expected. */
  resync?: ResyncId & { nextPart: number };
  /** The last resync ended (applied, or superseded), so its pieces are not applied again. */
  lastResync?: ResyncId;
  /** The replica is consistent once `nextSeq` reaches this (and no resync is under way). */
  consistentFromSeq: number;
  deltasApplied: number;
  bytesApplied: number;
  /** Source clock of the last delta applied: for the lag figure. */
  lastDeltaCreatedAtMs?: number;
  /** The replication was cut over and the replica holds everything up to its final seq. */
  cutover?: { finalSeq: number; at: string };
}

export interface ResyncId {
  seq: number;
  generation: number;
}

/** Resyncs are ordered by S, then by generation. */
function compareResyncs(a: ResyncId, b: ResyncId): number {
  return a.seq - b.seq || a.generation - b.generation;
}

export interface ApplyResult {
  applied: number;
  /** True if a delta is missing (a gap with no resync yet): replay waits for it. */
  waiting: boolean;
  /** The replication was cut over and every delta up to its final seq is applied. */
  cutOver: boolean;
}

export interface ApplierLockOptions {
  /** Who holds the replica, for the message a second applier gets (default 'ferry replica applier'). */
  purpose?: string;
  /** Hand the lock to a process that asks for it (a cutover), and take it back after. */
  yieldable?: boolean;
  /** Ask a yieldable holder (a follower) to hand the lock over instead of failing. */
  takeOver?: boolean;
  signal?: AbortSignal;
}

export interface FollowOptions {
  signal?: AbortSignal;
  /** How often to look for deltas (default 500 ms). */
  pollMs?: number;
  /** Called after each pass that applied something. */
  onApplied?: (result: ApplyResult) => void;
  /** Called when a pass fails with a transient error that will be retried. */
  onRetry?: (error: FerryError, failures: number) => void;
}

/** Transient: the store or the disk may answer later. Damaged data is not something waiting fixes. */
function isTransient(err: unknown): err is FerryError {
  return err instanceof FerryError && (err.code === 'store-unavailable' || err.code === 'io');
}

export class ReplicaApplier {
  private exclusive: Promise<unknown> = Promise.resolve();
  private lock: ProcessLock | undefined;
  /** Aborted when the lock is handed over: the pass under way stops between deltas. */
  private handover = new AbortController();
  /** The lock was handed over and taken back: the state file may have moved on. */
  private stale = false;
  /** Verifies deltas on a worker thread, while this one writes the replica (made on first use). */
  private hasher: ChunkHasher | undefined;
  /**
   * What deltas are read into (see ReadAhead), kept from pass to pass: the hasher's worker
   * holds on to shared memory it was sent until it collects garbage, which it seldom does.
   */
  private readonly readBuffers = new BufferPool(readBufferBytes, readAheadDeltas + 2, { shared: true });

  /**
   * Delete deltas from the store once they are applied (default). A disk has one replica;
   * turn this off to keep the deltas, e.g. to replay them onto a second copy.
   */
  prune = true;

  private constructor(
    private readonly repo: Repository,
    readonly replicaPath: string,
    private state: ReplicaState,
    private readonly logger: Logger,
  ) {}

  static statePath(replicaPath: string): string {
    return `${replicaPath}.ferry-replica.json`;
  }

  /**
   * Makes `replicaPath` a replica of the manifest's replication (a base copy or seed of a
   * disk under capture): under the replica's lock, `restoreBase` writes the base (migrate's
   * restoreDisk), then replay starts at the manifest's epoch.
   */
  static async create(options: {
    repo: Repository;
    diskId: string;
    manifestId: string;
    replicaPath: string;
    restoreBase: (manifestId: string, replicaPath: string, signal?: AbortSignal) => Promise<void>;
    signal?: AbortSignal;
    logger?: Logger;
    lock?: ApplierLockOptions;
  }): Promise<ReplicaApplier> {
    checkDiskId(options.diskId);
    const { id, manifest } = await options.repo.getManifest(options.manifestId, options.signal);
    if (manifest.replication === undefined) {
      throw new FerryError(
        'bad-input',
        `manifest ${id} has no replication: it is a plain copy (ferry copy), not a base copy or seed of a disk under capture, so no deltas follow it; restore it with 'ferry restore'`,
      );
    }
    const lock = await ReplicaApplier.lockReplica(options.replicaPath, { ...options.lock, signal: options.signal });
    try {
      await options.restoreBase(id, options.replicaPath, options.signal);
      const state: ReplicaState = {
        version: stateVersion,
        diskId: options.diskId,
        replication: manifest.replication,
        manifestId: id,
        epoch: manifest.epoch,
        nextSeq: manifest.epoch,
        consistentFromSeq: manifest.consistentAt ?? manifest.epoch,
        deltasApplied: 0,
        bytesApplied: 0,
      };
      const applier = new ReplicaApplier(options.repo, options.replicaPath, state, options.logger ?? Logger.silent());
      applier.lock = lock;
      await applier.persist();
      return applier;
    } catch (err) {
      await lock.release();
      throw err;
    }
  }

  /** Reopens a replica's applier from its state file, holding the replica's lock. */
  static async open(repo: Repository, replicaPath: string, options: { logger?: Logger; lock?: ApplierLockOptions } = {}): Promise<ReplicaApplier> {
    const state = await readReplicaState(replicaPath);
    const applier = new ReplicaApplier(repo, replicaPath, state, options.logger ?? Logger.silent());
    applier.lock = await ReplicaApplier.lockReplica(replicaPath, {
      ...options.lock,
      ...(options.lock?.yieldable ? { onYield: () => applier.yieldReplica(), onRetaken: () => applier.retaken() } : {}),
    });
    try {
      // Read again under the lock: whoever held it before may have moved replay on.
      applier.state = await readReplicaState(replicaPath);
    } catch (err) {
      await applier.close();
      throw err;
    }
    return applier;
  }

  private static async lockReplica(
    replicaPath: string,
    options: ApplierLockOptions & { onYield?: () => Promise<void>; onRetaken?: () => void },
  ): Promise<ProcessLock> {
    // The same file reached by another path is the same replica.
    const dir = await realpath(dirname(replicaPath)).catch(() => dirname(replicaPath));
    const path = join(dir, basename(replicaPath));
    return ProcessLock.acquire(`replica:${path}`, {
      purpose: options.purpose ?? 'ferry replica applier',
      description: `replica ${replicaPath}`,
      takeOver: options.takeOver,
      onYield: options.onYield,
      onRetaken: options.onRetaken,
      signal: options.signal,
    });
  }

  /** Releases the replica's lock (a follower that had handed it over takes it back). */
  async close(): Promise<void> {
    this.handover.abort();
    // Handed over: releasing ends the wait of a pass queued for the lock.
    if (this.lock && !this.lock.held) await this.lock.release();
    await this.exclusive;
    await this.lock?.release();
    await this.hasher?.close();
    this.hasher = undefined;
  }

  get nextSeq(): number {
    return this.state.nextSeq;
  }

  get replication(): string {
    return this.state.replication;
  }

  /** The replication was cut over and the replica holds its final seq: nothing more comes. */
  get cutOver(): boolean {
    return this.state.cutover !== undefined;
  }

  get consistent(): boolean {
    return this.state.resync === undefined && this.state.nextSeq >= this.state.consistentFromSeq;
  }

  snapshot(): Readonly<ReplicaState> {
    return structuredClone(this.state);
  }

  /**
   * Applies every delta that is ready, in replay order; with `throughSeq`, stops before a
   * journal delta that starts past it (to stop at a chosen segment boundary). Calls are
   * serialized.
   */
  applyAvailable(signal?: AbortSignal, options: { throughSeq?: number } = {}): Promise<ApplyResult> {
    const run = this.exclusive.then(async () => {
      // While the lock is handed over, whoever holds it applies; this one waits, then reads
      // the state again: the other may have moved replay on, or cut over.
      await this.lock?.whenHeld(signal);
      if (this.stale) {
        this.state = await readReplicaState(this.replicaPath);
        this.stale = false;
      }
      const handover = this.handover.signal;
      try {
        return await this.applyReady(AbortSignal.any([handover, ...(signal ? [signal] : [])]), options.throughSeq ?? Infinity);
      } catch (err) {
        // Stopped to hand the lock over: not a failure, the next pass carries on.
        if (handover.aborted && !signal?.aborted) return { applied: 0, waiting: false, cutOver: false };
        throw err;
      }
    });
    this.exclusive = run.catch(() => {});
    return run;
  }

  private async applyReady(signal: AbortSignal, throughSeq: number): Promise<ApplyResult> {
    if (this.state.cutover) return { applied: 0, waiting: false, cutOver: true };
    const { deltas, cutOver } = await listDeltas(this.repo, this.state.diskId, this.state.replication, signal);
    // Replay of a replication that was cut over ends at its final seq.
    const mark = cutOver ? await this.repo.getCutoverMark(this.state.diskId, this.state.replication, signal) : undefined;
    const lastSeq = Math.min(throughSeq, mark ? mark.finalSeq - 1 : Infinity);
    await this.endSupersededResync(deltas);
    let applied = 0;
    let waiting = false;
    // Writes go one at a time, each awaited before the next: a write that stalls (behind the
    // flush of the group before) holds up nothing the threadpool would let run meanwhile, so
    // small ones stay inline even then, where each costs no hop to another thread.
    const device = await FileDevice.open(this.replicaPath, { inlineIo: { threadpoolMs: 0 } });
    // Deltas are committed in groups: the replica flushed, then the state file written,
    // once for several deltas (applying one again after a crash is harmless). Deltas that
    // replay no longer needs are deleted only after the state that says so is durable.
    // A group's commit runs while the next group is applied; its state is the one at the
    // group's end, which the flush covers (later writes may or may not be in it).
    const batch = { deltas: 0, bytes: 0, prunable: [] as DeltaName[] };
    let committing = Promise.resolve();
    const commit = async () => {
      await committing; // one commit at a time, in order
      const state = batch.deltas > 0 ? structuredClone(this.state) : undefined;
      const prunable = batch.prunable.splice(0);
      batch.deltas = batch.bytes = 0;
      committing = (async () => {
        if (state) {
          await device.flush();
          await this.persist(state);
        }
        for (const name of prunable) await deleteDelta(this.repo, name, signal);
      })();
      committing.catch(() => {}); // met by the next commit, or by the end of this pass
    };
    // Read ahead: the deltas after this one that replay may apply (one skipped now stays skipped).
    this.hasher ??= new ChunkHasher();
    const reads = new ReadAhead(this.repo, this.readBuffers, this.hasher, deltas, signal, (n) => this.decide(n) !== 'skip' && !(n.kind === 'journal' && n.seq > lastSeq));
    try {
      for (const [index, name] of deltas.entries()) {
        throwIfAborted(signal);
        const step = this.decide(name);
        if (step === 'skip') {
          reads.drop(name);
          // Applied (the state says so) or superseded: no replay needs it again.
          if (this.prune) batch.prunable.push(name);
          continue;
        }
        if (name.kind === 'journal' && name.seq > lastSeq) break;
        if (step === 'wait') {
          waiting = true;
          break;
        }
        const bytes = await this.apply(device, name, await reads.take(index));
        if (bytes === undefined) {
          waiting = true; // a journal delta it needs is not listed yet
          break;
        }
        applied++;
        batch.deltas++;
        batch.bytes += bytes;
        if (batch.deltas >= commitEveryDeltas || batch.bytes >= commitEveryBytes) await commit();
      }
      await commit();
      await committing;
    } finally {
      // Stopped part way (a failure, a handover): what was applied is committed all the same.
      if (batch.deltas > 0) await commit().catch(() => {});
      await committing.catch(() => {});
      reads.abandon();
      await device.close();
    }
    if (mark && this.state.nextSeq >= mark.finalSeq && this.consistent) {
      await this.recordCutover(mark.finalSeq, mark.at);
      this.logger.info('replication cut over: replay complete', { disk: this.state.diskId, replication: this.state.replication, finalSeq: mark.finalSeq });
      return { applied, waiting: false, cutOver: true };
    }
    return { applied, waiting, cutOver: false };
  }

  /**
   * Applies deltas until replay has reached `seq` (every record below it applied) and the
   * replica is consistent; polls the store while deltas are still on their way. Gives up
   * ('invalid-state') once replay has made no progress for `stallTimeoutMs` (default 60 s):
   * a cutover waits here with its source paused, and must not wait forever for a delta that
   * will never come.
   */
  async applyUntil(seq: number, options: { signal?: AbortSignal; pollMs?: number; stallTimeoutMs?: number } = {}): Promise<void> {
    const stallTimeoutMs = options.stallTimeoutMs ?? 60_000;
    let lastProgress = performance.now();
    for (;;) {
      const result = await this.applyAvailable(options.signal);
      if (this.state.nextSeq >= seq && this.consistent) return;
      if (result.applied > 0) lastProgress = performance.now();
      else if (performance.now() - lastProgress > stallTimeoutMs) {
        throw new FerryError(
          'invalid-state',
          `replica ${this.replicaPath}: replay is at seq ${this.state.nextSeq}${result.waiting ? ', waiting for a delta that is not in the store,' : ''} and made no progress for ${Math.round(stallTimeoutMs / 1000)} s; it needs seq ${seq}`,
        );
      }
      throwIfAborted(options.signal);
      await sleep(options.pollMs ?? 20);
    }
  }

  /**
   * Applies deltas as they arrive until the replication is cut over (resolves true) or the
   * signal fires (resolves false). Transient failures (store unavailable, IO) are retried
   * with backoff up to 30 s; anything else (a corrupt delta) is thrown.
   */
  async follow(options: FollowOptions = {}): Promise<boolean> {
    const { signal } = options;
    const pollMs = options.pollMs ?? 500;
    let failures = 0;
    while (!signal?.aborted) {
      try {
        const result = await this.applyAvailable(signal);
        failures = 0;
        if (result.applied > 0) options.onApplied?.(result);
        if (result.cutOver) return true;
      } catch (caught) {
        if (signal?.aborted) break;
        // A system call that failed on the replica (a full file system, an IO error) may
        // well succeed later: said, and tried again, like a store that is away.
        const err = (caught as NodeJS.ErrnoException).syscall === undefined ? caught : new FerryError('io', `replica ${this.replicaPath}: ${asFerryError(caught).message}`, { cause: caught });
        if (!isTransient(err)) throw err;
        failures++;
        options.onRetry?.(err, failures);
      }
      await sleep(Math.min(30_000, pollMs * 2 ** Math.min(failures, 6)), undefined, { signal }).catch(() => {});
    }
    return false;
  }

  /**
   * The cutover's commit at the replica, after the source was fenced: marks the replication
   * cut over in the store (no applier follows it any more), records it here, and deletes
   * the replication's deltas, all applied.
   */
  async commitCutover(finalSeq: number, verified: 'full' | 'deltas', signal?: AbortSignal): Promise<void> {
    const at = new Date().toISOString();
    await this.repo.putCutoverMark({ disk: this.state.diskId, replication: this.state.replication, finalSeq, at, verified }, signal);
    await this.recordCutover(finalSeq, at);
    const { deltas } = await listDeltas(this.repo, this.state.diskId, this.state.replication, signal);
    for (const name of deltas) await deleteDelta(this.repo, name, signal);
  }

  /** SHA-256 of the whole replica (for a cutover's verify 'full'). */
  async hash(signal?: AbortSignal): Promise<DiskDigest> {
    const device = await FileDevice.open(this.replicaPath, { readOnly: true });
    try {
      return await hashDisk(device, signal);
    } finally {
      await device.close();
    }
  }

  private async recordCutover(finalSeq: number, at: string): Promise<void> {
    this.state.cutover = { finalSeq, at };
    await this.persist();
  }

  /** The lock is being handed over: stop the pass under way (between two deltas). */
  private async yieldReplica(): Promise<void> {
    this.handover.abort();
    await this.exclusive;
  }

  /** The lock is back: whoever had it may have applied deltas or cut over. */
  private retaken(): void {
    this.handover = new AbortController();
    this.stale = true;
  }

  private decide(name: DeltaName): 'apply' | 'skip' | 'wait' {
    const s = this.state;
    if (name.kind === 'resync') {
      if (s.lastResync && compareResyncs(name, s.lastResync) <= 0) return 'skip';
      if (s.resync && compareResyncs(name, s.resync) === 0) {
        if (name.second < s.resync.nextPart) return 'skip';
        return name.second === s.resync.nextPart ? 'apply' : 'wait';
      }
      // A later resync waits until the one under way ends (or is superseded, see below).
      if (s.resync) return compareResyncs(name, s.resync) < 0 ? 'skip' : 'wait';
      if (name.seq < s.nextSeq) return 'skip'; // replay has moved past this resync
      return name.second === 0 ? 'apply' : 'wait';
    }
    if (s.resync) return name.second < s.resync.seq ? 'skip' : 'wait';
    if (name.second < s.nextSeq) return 'skip';
    return name.seq <= s.nextSeq ? 'apply' : 'wait';
  }

  /**
   * A resync under way whose next piece will never come ends here. The source ships one
   * resync at a time, in order, so when a later resync has begun and this one's next piece
   * is not in the store, the source stopped in the middle of it (a crash, a restart).
   * Replay continues from its S, through the journal up to the later resync, which carries
   * every block the first one did not ship. The replica stays inconsistent until the later
   * resync's final piece.
   */
  private async endSupersededResync(names: DeltaName[]): Promise<void> {
    const current = this.state.resync;
    if (!current) return;
    const isResync = (n: DeltaName) => n.kind === 'resync';
    const nextPiece = names.some((n) => isResync(n) && compareResyncs(n, current) === 0 && n.second === current.nextPart);
    const laterBegun = names.some((n) => isResync(n) && compareResyncs(n, current) > 0 && n.second === 0);
    if (nextPiece || !laterBegun) return;
    this.logger.warn('resync superseded by a later one', { disk: this.state.diskId, seq: current.seq, generation: current.generation });
    this.state.nextSeq = current.seq;
    this.state.lastResync = { seq: current.seq, generation: current.generation };
    delete this.state.resync;
    this.state.consistentFromSeq = Number.MAX_SAFE_INTEGER; // until the later resync is final
    await this.persist();
  }

  /**
   * Applies a delta to the replica and the state in memory (the caller commits both);
   * resolves with the bytes it covered, or undefined (and nothing written) for a resync whose
   * journal records before it are not all applied yet.
   */
  private async apply(device: FileDevice, name: DeltaName, delta: Delta): Promise<number | undefined> {
    // A listing that lags may not show a journal delta shipped before the fall back yet: the
    // resync does not carry those records, so it waits for them rather than jump over them.
    if (delta.kind === 'resync' && delta.part === 0 && this.state.nextSeq < (delta.needsSeq ?? 0)) {
      this.logger.info('resync waits for journal deltas before it', { resync: name.key, nextSeq: this.state.nextSeq, needsSeq: delta.needsSeq });
      return undefined;
    }
    if (delta.diskSizeBytes !== device.sizeBytes) {
      throw new FerryError('bad-input', `delta ${name.key} is for a ${delta.diskSizeBytes}-byte disk; replica ${this.replicaPath} has ${device.sizeBytes} bytes`);
    }
    for (const extent of delta.extents) {
      if (extent.kind === 'write') await device.write(extent.data!, extent.offset);
      // A large zeroed or trimmed range is deallocated (it reads as zeros all the same), so
      // a guest's fstrim does not fill the replica's filesystem.
      else if (extent.length >= holeMinBytes) await device.trim(extent.offset, extent.length);
      else await device.writeZeroes(extent.offset, extent.length);
    }

    const s = this.state;
    if (delta.kind === 'journal') {
      s.nextSeq = delta.endSeq + 1;
    } else {
      // From a resync's first piece until its final one and the journal it needs, the
      // replica is not a consistent image.
      s.resync ??= { seq: delta.seq, generation: delta.generation, nextPart: 0 };
      s.resync.nextPart = delta.part + 1;
      if (delta.final) {
        s.consistentFromSeq = delta.endSeq;
        s.nextSeq = delta.seq;
        s.lastResync = { seq: delta.seq, generation: delta.generation };
        delete s.resync;
      }
    }
    const bytes = delta.extents.reduce((sum, e) => sum + e.length, 0);
    s.deltasApplied++;
    s.bytesApplied += bytes;
    s.lastDeltaCreatedAtMs = delta.createdAtMs;
    return bytes;
  }

  private async persist(state: ReplicaState = this.state): Promise<void> {
    await writeFileAtomic(ReplicaApplier.statePath(this.replicaPath), `${JSON.stringify(state, null, 2)}\n`);
  }
}

/**
 * Deltas being read (and verified) ahead of their turn; nothing is written from here. Each
 * read goes into a buffer of the pool (shared memory, hashed in place on the hasher's
 * worker); the delta `take` gives may be used until the next `take` or `abandon`, which
 * hand its buffer back.
 */
class ReadAhead {
  private readonly reads = new Map<string, { delta: Promise<Delta>; buffer: Buffer }>();
  /** The buffer of the delta taken last. */
  private current: Buffer | undefined;
  /** The next delta to consider reading ahead. */
  private next = 0;
  /** How many deltas to keep read ahead: fewer when they are large (readAheadBytes). */
  private depth = readAheadDeltas;
  private readonly abandoned = new AbortController();
  private readonly signal: AbortSignal;

  constructor(
    private readonly repo: Repository,
    private readonly buffers: BufferPool,
    private readonly hasher: ChunkHasher,
    private readonly names: readonly DeltaName[],
    signal: AbortSignal,
    private readonly wanted: (name: DeltaName) => boolean,
  ) {
    this.signal = AbortSignal.any([signal, this.abandoned.signal]);
  }

  /** The delta at `index` of the names, read ahead or read now; starts reading the next ones. */
  take(index: number): Promise<Delta> {
    this.giveBackCurrent();
    const name = this.names[index]!;
    const read = this.reads.get(name.key) ?? this.read(name);
    this.reads.delete(name.key);
    this.current = read.buffer;
    this.next = Math.max(this.next, index + 1);
    // Refilled in groups, half the depth at a time: the reads started together are verified
    // by one message to the hasher's worker, not one each.
    if (this.reads.size > this.depth / 2) return read.delta;
    while (this.reads.size < this.depth && this.next < this.names.length) {
      const ahead = this.names[this.next++]!;
      if (!this.wanted(ahead)) continue;
      const aheadRead = this.read(ahead);
      aheadRead.delta.catch(() => {}); // its failure is met by take(), or by no one if it is dropped
      this.reads.set(ahead.key, aheadRead);
    }
    return read.delta;
  }

  /** A delta replay will not apply after all. */
  drop(name: DeltaName): void {
    const read = this.reads.get(name.key);
    this.reads.delete(name.key);
    if (read) this.giveBackWhenSettled(read);
  }

  /** Stops the reads no one will take. */
  abandon(): void {
    this.abandoned.abort();
    for (const read of this.reads.values()) this.giveBackWhenSettled(read);
    this.reads.clear();
    this.giveBackCurrent();
  }

  private read(name: DeltaName): { delta: Promise<Delta>; buffer: Buffer } {
    const buffer = this.buffers.take();
    const delta = getDelta(this.repo, name, this.signal, { into: buffer, hasher: this.hasher });
    delta.then(
      (d) => {
        const bytes = d.extents.reduce((sum, e) => sum + (e.data?.byteLength ?? 0), 0);
        this.depth = Math.max(2, Math.min(readAheadDeltas, Math.floor(readAheadBytes / Math.max(1, bytes))));
      },
      () => {},
    );
    return { delta, buffer };
  }

  private giveBackCurrent(): void {
    if (this.current) this.buffers.give(this.current);
    this.current = undefined;
  }

  /** A read may still be filling its buffer: it goes back to the pool once the read ends. */
  private giveBackWhenSettled(read: { delta: Promise<Delta>; buffer: Buffer }): void {
    void read.delta.catch(() => {}).then(() => this.buffers.give(read.buffer));
  }
}

async function readReplicaState(replicaPath: string): Promise<ReplicaState> {
  const path = ReplicaApplier.statePath(replicaPath);
  let state: ReplicaState;
  try {
    state = JSON.parse(await readFile(path, 'utf8')) as ReplicaState;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new FerryError('not-found', `replica ${replicaPath} has no state file ${path}`, { cause: err });
    throw new FerryError('checksum-mismatch', `replica state ${path} is damaged: ${(err as Error).message}`, { cause: err });
  }
  if ((state.version as number) === 1) {
    throw new FerryError(
      'unsupported-version',
      `replica state ${path} has version 1, from before replications had an identity: its deltas cannot be told from another replication's; build the replica again ('ferry replica init') from a new base copy or seed`,
    );
  }
  if (state.version !== stateVersion) {
    throw new FerryError('unsupported-version', `replica state ${path} has version ${String(state.version)}; this ferry reads ${stateVersion}`);
  }
  checkReplicationId(state.replication, `replica state ${path}: replication`);
  return state;
}
