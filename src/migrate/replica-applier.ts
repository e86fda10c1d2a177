/**
 * The replica applier: keeps a destination disk warm. It starts from a base (a restored
 * manifest, whose epoch says where replay begins) and applies the disk's deltas from the
 * store in replay order, each verified in full before a byte of it is written (invariant 6).
 *
 * Progress is a small state file beside the replica (`<replica>.ferry-replica.json`),
 * written after the replica is flushed. Applying a delta is idempotent (it writes absolute
 * contents), so a crash between the flush and the state write only means the delta is
 * applied again.
 *
 * Replay order (DESIGN.md, "Two ways to track, one replay"):
 * - journal deltas continue from `nextSeq`: one whose seqs end below it is skipped (it is
 *   older than the base or already applied); one that starts at or below it is applied.
 * - a gap before the next journal delta means the source fell back to its bitmap: the
 *   resync at S (pieces 0, 1, ... up to the final one) is applied, then replay continues
 *   from S. A resync left unfinished by a crash of the source is superseded by the next
 *   one, which carries every block the first did not ship.
 * - the replica is consistent (crash-consistent at a segment boundary) except while a
 *   resync is under way and until replay passes the seq at which its last read was made.
 */
import { readFile, rename, writeFile } from 'node:fs/promises';
import { FerryError, FileDevice, Logger, throwIfAborted } from '../core/index.js';
import { checkDiskId, type DeltaName, type Repository } from '../store/index.js';
import { restoreDisk, type RestoreOptions } from './restore.js';

const stateVersion = 1;

export interface ReplicaState {
  version: typeof stateVersion;
  diskId: string;
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
}

export class ReplicaApplier {
  private exclusive: Promise<unknown> = Promise.resolve();

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

  /** Restores the base manifest into `replicaPath` and starts replay at its epoch. */
  static async create(
    options: { repo: Repository; diskId: string; manifestId: string; replicaPath: string; logger?: Logger } & Pick<RestoreOptions, 'signal' | 'onProgress' | 'concurrency'>,
  ): Promise<ReplicaApplier> {
    checkDiskId(options.diskId);
    const { manifestId } = await restoreDisk({ ...options, destPath: options.replicaPath });
    const { manifest } = await options.repo.getManifest(manifestId, options.signal);
    const state: ReplicaState = {
      version: stateVersion,
      diskId: options.diskId,
      manifestId,
      epoch: manifest.epoch,
      nextSeq: manifest.epoch,
      consistentFromSeq: manifest.epoch,
      deltasApplied: 0,
      bytesApplied: 0,
    };
    const applier = new ReplicaApplier(options.repo, options.replicaPath, state, options.logger ?? Logger.silent());
    await applier.persist();
    return applier;
  }

  /** Reopens a replica's applier from its state file. */
  static async open(repo: Repository, replicaPath: string, logger = Logger.silent()): Promise<ReplicaApplier> {
    const path = ReplicaApplier.statePath(replicaPath);
    let state: ReplicaState;
    try {
      state = JSON.parse(await readFile(path, 'utf8')) as ReplicaState;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') throw new FerryError('not-found', `replica ${replicaPath} has no state file ${path}`, { cause: err });
      throw new FerryError('checksum-mismatch', `replica state ${path} is damaged: ${(err as Error).message}`, { cause: err });
    }
    if (state.version !== stateVersion) {
      throw new FerryError('unsupported-version', `replica state ${path} has version ${String(state.version)}; this ferry reads ${stateVersion}`);
    }
    return new ReplicaApplier(repo, replicaPath, state, logger);
  }

  get nextSeq(): number {
    return this.state.nextSeq;
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
    const run = this.exclusive.then(() => this.applyReady(signal, options.throughSeq ?? Infinity));
    this.exclusive = run.catch(() => {});
    return run;
  }

  private async applyReady(signal: AbortSignal | undefined, throughSeq: number): Promise<ApplyResult> {
    const names = await this.repo.listDeltas(this.state.diskId, signal);
    await this.endSupersededResync(names);
    let applied = 0;
    const device = await FileDevice.open(this.replicaPath);
    try {
      for (const name of names) {
        throwIfAborted(signal);
        const step = this.decide(name);
        if (step === 'skip') {
          // Applied (the state file says so) or superseded: no replay needs it again.
          if (this.prune) await this.repo.deleteDelta(name, signal);
          continue;
        }
        if (name.kind === 'journal' && name.seq > throughSeq) break;
        if (step === 'wait') return { applied, waiting: true };
        await this.apply(device, name, signal);
        applied++;
      }
    } finally {
      await device.close();
    }
    return { applied, waiting: false };
  }

  /**
   * Applies deltas until replay has reached `seq` (every record below it applied) and the
   * replica is consistent; polls the store while deltas are still on their way.
   */
  async applyUntil(seq: number, options: { signal?: AbortSignal; pollMs?: number } = {}): Promise<void> {
    for (;;) {
      await this.applyAvailable(options.signal);
      if (this.state.nextSeq >= seq && this.consistent) return;
      throwIfAborted(options.signal);
      await new Promise((resolve) => setTimeout(resolve, options.pollMs ?? 20));
    }
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

  private async apply(device: FileDevice, name: DeltaName, signal?: AbortSignal): Promise<void> {
    const delta = await this.repo.getDelta(name, signal);
    if (delta.diskSizeBytes !== device.sizeBytes) {
      throw new FerryError('bad-input', `delta ${name.key} is for a ${delta.diskSizeBytes}-byte disk; replica ${this.replicaPath} has ${device.sizeBytes} bytes`);
    }
    for (const extent of delta.extents) {
      if (extent.kind === 'write') await device.write(extent.data!, extent.offset);
      else await device.writeZeroes(extent.offset, extent.length);
    }
    await device.flush();

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
    s.deltasApplied++;
    s.bytesApplied += delta.extents.reduce((sum, e) => sum + e.length, 0);
    s.lastDeltaCreatedAtMs = delta.createdAtMs;
    await this.persist();
  }

  private async persist(): Promise<void> {
    const path = ReplicaApplier.statePath(this.replicaPath);
    await writeFile(`${path}.tmp`, `${JSON.stringify(this.state, null, 2)}\n`, { flush: true });
    await rename(`${path}.tmp`, path);
  }
}
