/**
 * The filter service: the long-lived source-side process of `ferry filter`. It serves one
 * or more disks, each through its own SourceReplication (capture filter, change tracker,
 * delta shipper to the store) and its own NbdServer on `<socketDir>/<disk>.sock` (export
 * name = disk id), and offers the operations a control interface needs: status, quiesce and
 * resume, the final drain, the fence, base copies in the background, the link's rate, the mode.
 *
 * A quiesce belongs to one cutover (its `owner`) and holds for a lease (default 30 s) that
 * the owner renews; a lease that runs out resumes the disk (logged), so a cutover client
 * that died never leaves a VM's IO held. While one owner holds a disk, another is refused
 * ('conflict'); an owner whose lease ran out cannot drain or fence any more. The fence, the
 * cutover's commit point, turns the quiesce into a durable refusal of IO (source-fence.ts).
 *
 * QEMU does not reconnect to an NBD server that went away (its NBD client gives up on EOF),
 * so this process must outlive restarts of everything else; it holds no state that a
 * restart of the control plane needs.
 *
 * `close()` is the clean shutdown: stop accepting NBD connections and finish the IO in
 * flight, then per disk flush, seal the journal and close the tracker cleanly (the next
 * start trusts it: no full resync), leaving the journal on disk to ship after the restart.
 */
import { connect } from 'node:net';
import { lstat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { FerryError, Logger, asFerryError, badInput, hashDisk, makeDirectory } from '../core/index.js';
import { fenceMessage, type BackpressureSettings, type ChangeTrackerState, type FenceRecord, type JournalOptions, type ShipperStats, type TrackingMode } from '../delta/index.js';
import type { FinalDrain } from '../cutover/index.js';
import { MemoryBudget, NbdServer, defaultMemoryBudgetBytes, type NbdServerStats } from '../nbd/index.js';
import type { SeedKey } from '../seed/index.js';
import { checkDiskId, type Repository } from '../store/index.js';
import type { CopyProgress } from './background-copy.js';
import { SourceReplication, type ReplicationFigures } from './disk-replication.js';
import { exportLiveSeed } from './seed-source.js';
import { Throttle } from './throttle.js';

export interface FilterDiskSpec {
  /** Disk id: names the export, the tracker directory and the disk's deltas in the store. */
  id: string;
  /** The raw image or block device. */
  path: string;
}

export interface FilterServiceOptions {
  disks: FilterDiskSpec[];
  /** Per-disk tracker state goes to `<stateDir>/<id>/`. */
  stateDir: string;
  /** Where the NBD sockets go: `<socketDir>/<id>.sock`. */
  socketDir: string;
  /** Where the disks' deltas and base copies go; needed when there are disks. */
  repo?: Repository;
  /** The link's replication budget shared by all disks (0 = unlimited). */
  rateBytesPerSec?: number;
  journal?: Omit<JournalOptions, 'logger'>;
  backpressure?: Partial<Omit<BackpressureSettings, 'hardLimitBytes'>>;
  logger?: Logger;
}

export interface BaseCopyStatus {
  state: 'running' | 'done' | 'failed';
  startedAt: string;
  epoch: number;
  bytesDone: number;
  bytesTotal: number;
  rateBytesPerSec: number;
  manifestId?: string;
  error?: { code: string; message: string };
}

export interface SeedExportStatus {
  state: 'running' | 'done' | 'failed';
  startedAt: string;
  deviceDir: string;
  disks: string[];
  bytesDone: number;
  bytesTotal: number;
  rateBytesPerSec: number;
  seedId?: string;
  volumes?: number;
  error?: { code: string; message: string };
}

export interface FilterDiskStatus {
  id: string;
  path: string;
  sizeBytes: number;
  /** nbd+unix URI of the export, for QEMU and the NBD tools. */
  uri: string;
  socketPath: string;
  quiesced: boolean;
  /** Parked in bitmap mode on purpose (a seed in transit, a paused migration): nothing ships until it streams again. */
  parked: boolean;
  figures: ReplicationFigures;
  tracker: ChangeTrackerState;
  shipper: ShipperStats;
  nbd: NbdServerStats;
  /** Write backpressure: acknowledgements slow down above the high-water mark. */
  backpressure: BackpressureSettings;
  baseCopy?: BaseCopyStatus;
  /** Set while a cutover holds the disk quiesced. */
  quiesce?: QuiesceStatus;
  /** Set while the disk is fenced after its cutover. */
  fence?: FenceRecord;
}

export interface QuiesceStatus {
  owner: string;
  since: string;
  leaseMs: number;
  /** The disk resumes by itself then, unless the owner renews the lease. */
  expiresAt: string;
}

/** How long a quiesce holds unless renewed, by default. */
export const defaultQuiesceLeaseMs = 30_000;

interface QuiesceLease {
  owner: string;
  sinceMs: number;
  leaseMs: number;
  expiresAtMs: number;
  timer: NodeJS.Timeout;
}

interface ServedDisk {
  spec: FilterDiskSpec;
  socketPath: string;
  replication: SourceReplication;
  nbd: NbdServer;
  baseCopy?: { status: BaseCopyStatus; abort: AbortController; done: Promise<void> };
  lease?: QuiesceLease;
  /** Owners whose lease ran out (the latest few), with when: they are told so. */
  expired: Map<string, string>;
}

export class FilterService {
  private closing: Promise<void> | undefined;
  private seedExport: { status: SeedExportStatus; abort: AbortController; done: Promise<void> } | undefined;

  private constructor(
    private readonly disks: Map<string, ServedDisk>,
    readonly throttle: Throttle,
    private readonly logger: Logger,
  ) {}

  /** Opens every disk under capture, starts shipping, and serves each over NBD. */
  static async start(options: FilterServiceOptions): Promise<FilterService> {
    const logger = options.logger ?? Logger.silent();
    if (options.disks.length > 0 && !options.repo) throw badInput('repo', undefined, 'a store for the disks\' deltas');
    const seen = new Set<string>();
    for (const disk of options.disks) {
      checkDiskId(disk.id);
      if (seen.has(disk.id)) throw badInput('disk id', disk.id, 'each disk id once');
      seen.add(disk.id);
    }
    await makeDirectory(options.socketDir);
    const throttle = new Throttle(options.rateBytesPerSec ?? 0);
    const disks = new Map<string, ServedDisk>();
    const service = new FilterService(disks, throttle, logger);
    try {
      // One memory budget for the NBD connections of all the disks: together they hold at most that much.
      const budget = new MemoryBudget(defaultMemoryBudgetBytes);
      for (const spec of options.disks) {
        const socketPath = join(options.socketDir, `${spec.id}.sock`);
        await claimSocketPath(socketPath);
        const replication = await SourceReplication.start({
          diskId: spec.id,
          sourcePath: spec.path,
          trackerDir: join(options.stateDir, spec.id),
          repo: options.repo!,
          throttle,
          journal: options.journal,
          backpressure: options.backpressure,
          logger: logger.child({ disk: spec.id }),
        });
        const exportSpec = {
          device: replication.filter,
          description: `ferry filter: ${spec.path}`,
          refusal: () => (replication.fence ? fenceMessage(replication.fence) : undefined),
        };
        const nbd = new NbdServer({ exports: new Map([[spec.id, exportSpec]]), logger: logger.child({ disk: spec.id }), budget });
        disks.set(spec.id, { spec, socketPath, replication, nbd, expired: new Map() });
        await nbd.listen({ path: socketPath });
      }
    } catch (err) {
      await service.close().catch(() => {});
      throw err;
    }
    return service;
  }

  get diskIds(): string[] {
    return [...this.disks.keys()];
  }

  list(): FilterDiskStatus[] {
    return this.diskIds.map((id) => this.status(id));
  }

  status(id: string): FilterDiskStatus {
    const disk = this.disk(id);
    const { replication } = disk;
    return {
      id,
      path: disk.spec.path,
      sizeBytes: replication.source.sizeBytes,
      uri: `nbd+unix:///${id}?socket=${disk.socketPath}`,
      socketPath: disk.socketPath,
      quiesced: replication.filter.quiesced,
      parked: replication.parked,
      figures: replication.figures(),
      tracker: replication.tracker.state(),
      shipper: { ...replication.shipper.figures() },
      nbd: disk.nbd.stats(),
      backpressure: replication.backpressure.settings,
      ...(disk.baseCopy ? { baseCopy: { ...disk.baseCopy.status } } : {}),
      ...(disk.lease ? { quiesce: quiesceStatus(disk.lease) } : {}),
      ...(replication.fence ? { fence: { ...replication.fence } } : {}),
    };
  }

  /**
   * Holds new IO for `owner` and resolves once the IO in flight is done. The quiesce lasts
   * `leaseMs` unless renewed; the same owner asking again renews it.
   */
  async quiesce(id: string, owner: string, leaseMs = defaultQuiesceLeaseMs): Promise<QuiesceStatus> {
    const disk = this.disk(id);
    if (disk.replication.fence) throw new FerryError('conflict', fenceMessage(disk.replication.fence));
    if (disk.lease) {
      if (disk.lease.owner !== owner) throw heldBy(id, disk.lease);
      return this.renew(id, owner, leaseMs);
    }
    const expiredAt = disk.expired.get(owner);
    if (expiredAt) throw expiredLease(id, owner, expiredAt);
    // The lease is taken before waiting for IO in flight: a second cutover is refused at once.
    const lease = this.newLease(disk, owner, leaseMs);
    try {
      await disk.replication.filter.quiesce();
    } catch (err) {
      if (disk.lease === lease) this.endLease(disk);
      throw err;
    }
    this.logger.info('disk quiesced', { disk: id, owner, leaseMs });
    return quiesceStatus(lease);
  }

  /** Extends the owner's quiesce by `leaseMs` from now; refused once it has run out. */
  renew(id: string, owner: string, leaseMs?: number): QuiesceStatus {
    const disk = this.disk(id);
    const lease = this.leaseOf(id, disk, owner);
    clearTimeout(lease.timer);
    return quiesceStatus(this.newLease(disk, owner, leaseMs ?? lease.leaseMs, lease.sinceMs));
  }

  /**
   * Lets the disk's IO through again: by its quiesce's owner, or by anyone with `force` (an
   * operator). Resuming a disk that is not quiesced does nothing; a fenced disk is refused.
   */
  resume(id: string, by: { owner?: string; force?: boolean } = {}): void {
    const disk = this.disk(id);
    if (disk.replication.fence) throw new FerryError('invalid-state', fenceMessage(disk.replication.fence));
    if (disk.lease && disk.lease.owner !== by.owner && !by.force) throw heldBy(id, disk.lease);
    const owner = disk.lease?.owner;
    this.endLease(disk);
    if (owner) this.logger.info('disk resumed', { disk: id, owner, force: by.force === true });
  }

  /** Quiesced by `owner` only: seals and ships everything; resolves with the final seq. */
  async drainFinal(id: string, owner: string, signal?: AbortSignal): Promise<FinalDrain> {
    const disk = this.disk(id);
    this.leaseOf(id, disk, owner);
    const drained = await disk.replication.drainFinal(signal);
    this.logger.info('final delta drained', { disk: id, ...drained });
    return drained;
  }

  /**
   * The cutover's commit point at the source: `owner`'s quiesce becomes a durable fence (no
   * lease runs out on it). `finalSeq` must be the seq the final drain reported: nothing was
   * written since.
   */
  async fence(id: string, owner: string, finalSeq: number): Promise<FenceRecord> {
    const disk = this.disk(id);
    const lease = this.leaseOf(id, disk, owner);
    const seq = disk.replication.tracker.currentSeq;
    if (finalSeq !== seq) throw new FerryError('conflict', `disk ${id}: fence at seq ${finalSeq} asked, but the disk is at seq ${seq}: drain again`);
    clearTimeout(lease.timer); // nothing may resume the disk while the fence is written
    let record: FenceRecord;
    try {
      record = await disk.replication.fenceSource(owner, finalSeq);
    } catch (err) {
      this.newLease(disk, owner, lease.leaseMs, lease.sinceMs);
      throw err;
    }
    disk.lease = undefined;
    this.logger.info('disk fenced: cut over', { disk: id, owner, replication: record.replication, finalSeq });
    return record;
  }

  /**
   * An operator's deliberate release of a fenced disk (failback): it serves IO again as a
   * new replication. Resolves with the new replication's id.
   */
  async releaseFence(id: string, reason: string): Promise<string> {
    const { replication } = this.disk(id);
    const previous = replication.fence;
    const next = await replication.releaseFence(reason);
    this.logger.warn('fence released: the disk serves IO again', { disk: id, reason, cutOverReplication: previous?.replication, replication: next });
    return next;
  }

  private leaseOf(id: string, disk: ServedDisk, owner: string): QuiesceLease {
    if (disk.lease?.owner === owner) return disk.lease;
    const expiredAt = disk.expired.get(owner);
    if (expiredAt) throw expiredLease(id, owner, expiredAt);
    if (disk.lease) throw heldBy(id, disk.lease);
    throw new FerryError('invalid-state', `disk ${id} is not quiesced by ${JSON.stringify(owner)}`);
  }

  private newLease(disk: ServedDisk, owner: string, leaseMs: number, sinceMs = Date.now()): QuiesceLease {
    const lease: QuiesceLease = {
      owner,
      sinceMs,
      leaseMs,
      expiresAtMs: Date.now() + leaseMs,
      timer: setTimeout(() => this.expire(disk, lease), leaseMs),
    };
    lease.timer.unref();
    disk.lease = lease;
    return lease;
  }

  /** The owner did not renew in time (a cutover client that died): the disk runs again. */
  private expire(disk: ServedDisk, lease: QuiesceLease): void {
    if (disk.lease !== lease) return;
    disk.expired.set(lease.owner, new Date().toISOString());
    if (disk.expired.size > 16) disk.expired.delete(disk.expired.keys().next().value!);
    this.endLease(disk);
    this.logger.warn('quiesce lease ran out: the disk resumes', { disk: disk.spec.id, owner: lease.owner, heldMs: Date.now() - lease.sinceMs });
  }

  private endLease(disk: ServedDisk): void {
    if (disk.lease) clearTimeout(disk.lease.timer);
    disk.lease = undefined;
    disk.replication.filter.resume();
  }

  /** SHA-256 of the source disk as it stands (read directly: works while quiesced). */
  async hash(id: string, signal?: AbortSignal): Promise<{ sha256: string; sizeBytes: number }> {
    const { replication } = this.disk(id);
    return hashDisk(replication.source, signal);
  }

  /** Starts a base copy in the background; one at a time per disk. */
  startBaseCopy(id: string, options: { concurrency?: number } = {}): BaseCopyStatus {
    const disk = this.disk(id);
    if (this.closing) throw new FerryError('invalid-state', 'the filter is shutting down');
    if (disk.baseCopy?.status.state === 'running') throw new FerryError('conflict', `disk ${id}: a base copy is already running`);
    const abort = new AbortController();
    const status: BaseCopyStatus = {
      state: 'running',
      startedAt: new Date().toISOString(),
      epoch: disk.replication.tracker.currentSeq,
      bytesDone: 0,
      bytesTotal: disk.replication.source.sizeBytes,
      rateBytesPerSec: 0,
    };
    const onProgress = (p: CopyProgress) => {
      status.bytesDone = p.bytesDone;
      status.rateBytesPerSec = p.rateBytesPerSec;
    };
    this.logger.info('base copy started', { disk: id, epoch: status.epoch });
    const done = disk.replication.baseCopy({ signal: abort.signal, onProgress, concurrency: options.concurrency }).then(
      (result) => {
        status.state = 'done';
        status.manifestId = result.manifestId;
        status.epoch = result.manifest.epoch;
        status.bytesDone = status.bytesTotal;
        this.logger.info('base copy done', { disk: id, manifestId: result.manifestId, epoch: result.manifest.epoch });
      },
      (err: unknown) => {
        const error = asFerryError(err);
        status.state = 'failed';
        status.error = { code: error.code, message: error.message };
        this.logger.warn('base copy failed', { disk: id, error: error.message });
      },
    );
    disk.baseCopy = { status, abort, done };
    return { ...status };
  }

  baseCopyStatus(id: string): BaseCopyStatus {
    const copy = this.disk(id).baseCopy;
    if (!copy) throw new FerryError('not-found', `disk ${id}: no base copy was started`);
    return { ...copy.status };
  }

  /**
   * Exports a seed of running disks onto a device directory, in the background: each disk
   * is parked first (bitmap mode from the seed's epoch, no resync while the seed travels),
   * then read. Once the seed is imported at the destination, `setMode(id, 'streaming')`
   * ships the blocks dirtied since the epoch and streams again.
   */
  startSeedExport(options: { diskIds?: string[]; deviceDir: string; volumeSizeBytes?: number; key?: SeedKey }): SeedExportStatus {
    if (this.closing) throw new FerryError('invalid-state', 'the filter is shutting down');
    if (this.seedExport?.status.state === 'running') throw new FerryError('conflict', `a seed export to ${this.seedExport.status.deviceDir} is already running`);
    const served = (options.diskIds ?? [...this.disks.keys()]).map((id) => this.disk(id));
    const abort = new AbortController();
    const status: SeedExportStatus = {
      state: 'running',
      startedAt: new Date().toISOString(),
      deviceDir: options.deviceDir,
      disks: served.map((d) => d.spec.id),
      bytesDone: 0,
      bytesTotal: served.reduce((sum, d) => sum + d.replication.source.sizeBytes, 0),
      rateBytesPerSec: 0,
    };
    this.logger.info('seed export started', { device: options.deviceDir, disks: status.disks });
    const done = exportLiveSeed({
      replications: served.map((d) => d.replication),
      deviceDir: options.deviceDir,
      volumeSizeBytes: options.volumeSizeBytes,
      key: options.key,
      signal: abort.signal,
      onProgress: (p) => {
        status.bytesDone = p.bytesDone;
        status.bytesTotal = p.bytesTotal;
        status.rateBytesPerSec = p.rateBytesPerSec;
      },
    }).then(
      (result) => {
        status.state = 'done';
        status.seedId = result.manifest.seedId;
        status.volumes = result.manifest.volumes.length;
        status.bytesDone = status.bytesTotal;
        this.logger.info('seed export done', { device: options.deviceDir, seedId: status.seedId });
      },
      (err: unknown) => {
        const error = asFerryError(err);
        status.state = 'failed';
        status.error = { code: error.code, message: error.message };
        this.logger.warn('seed export failed', { device: options.deviceDir, error: error.message });
      },
    );
    this.seedExport = { status, abort, done };
    return { ...status };
  }

  seedExportStatus(): SeedExportStatus {
    if (!this.seedExport) throw new FerryError('not-found', 'no seed export was started');
    return { ...this.seedExport.status };
  }

  /**
   * Changes a disk's write backpressure at run time (a cutover tightens it while the
   * predicted pause is over its budget, and puts it back afterwards).
   */
  setBackpressure(id: string, changes: Partial<Pick<BackpressureSettings, 'highWaterBytes' | 'maxDelayMs'>>): BackpressureSettings {
    const { replication } = this.disk(id);
    replication.backpressure.update(changes);
    this.logger.info('backpressure changed', { disk: id, ...changes });
    return replication.backpressure.settings;
  }

  /** The link's budget for all disks, deltas first; 0 lifts the limit. */
  setRate(rateBytesPerSec: number): void {
    this.throttle.setRate(rateBytesPerSec);
    this.logger.info('rate changed', { rateBytesPerSec });
  }

  /**
   * 'bitmap': track dirty blocks only and stop shipping until switched back (a seed in
   * transit, a link too slow). 'streaming': ship a resync and journal again. A cutover's
   * final drain switches back to streaming by itself.
   */
  async setMode(id: string, mode: TrackingMode, reason = 'operator request'): Promise<TrackingMode> {
    const { replication } = this.disk(id);
    if (mode === 'bitmap') await replication.park(reason);
    else replication.unpark(); // the shipper runs the resync and restarts the journal
    this.logger.info('mode change requested', { disk: id, mode, reason });
    return replication.tracker.mode;
  }

  /** Clean shutdown; idempotent. See the file comment. */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    const disks = [...this.disks.values()];
    // Held IO must get through (or, on a fenced disk, be refused) for the NBD connections to finish.
    for (const disk of disks) this.endLease(disk);
    this.seedExport?.abort.abort(new Error('filter shutting down'));
    await this.seedExport?.done;
    await Promise.all(disks.map((disk) => disk.nbd.close()));
    for (const disk of disks) {
      disk.baseCopy?.abort.abort(new Error('filter shutting down'));
      await disk.baseCopy?.done;
    }
    for (const disk of disks) {
      try {
        await disk.replication.close();
        this.logger.info('disk closed cleanly', { disk: disk.spec.id, seq: disk.replication.tracker.currentSeq });
      } catch (err) {
        this.logger.error('closing disk failed', { disk: disk.spec.id, error: asFerryError(err).message });
      }
      await unlink(disk.socketPath).catch(() => {});
    }
    await this.throttle.close();
  }

  private disk(id: string): ServedDisk {
    const disk = this.disks.get(id);
    if (!disk) throw new FerryError('not-found', `no disk ${JSON.stringify(id)} here; this filter serves ${this.diskIds.join(', ') || 'no disks'}`);
    return disk;
  }
}

function quiesceStatus(lease: QuiesceLease): QuiesceStatus {
  return { owner: lease.owner, since: new Date(lease.sinceMs).toISOString(), leaseMs: lease.leaseMs, expiresAt: new Date(lease.expiresAtMs).toISOString() };
}

function heldBy(id: string, lease: QuiesceLease): FerryError {
  return new FerryError(
    'conflict',
    `disk ${id} is quiesced by ${JSON.stringify(lease.owner)} since ${new Date(lease.sinceMs).toISOString()} (a cutover under way); its lease ends at ${new Date(lease.expiresAtMs).toISOString()} unless renewed`,
  );
}

function expiredLease(id: string, owner: string, at: string): FerryError {
  return new FerryError('conflict', `the quiesce of disk ${id} by ${JSON.stringify(owner)} ran out at ${at} and the disk was resumed; start the cutover again`);
}

/**
 * Makes a unix socket path free to listen on: a socket file left by a process that died is
 * removed; one that a live process still answers on is refused ('invalid-state').
 */
export async function claimSocketPath(path: string): Promise<void> {
  const alive = await new Promise<boolean | 'missing'>((resolve) => {
    const socket = connect(path);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ENOENT' ? 'missing' : false));
  });
  if (alive === 'missing') return;
  if (alive) throw new FerryError('invalid-state', `${path}: another process is listening on this socket`);
  const info = await lstat(path).catch(() => undefined);
  if (info && !info.isSocket()) throw new FerryError('conflict', `${path} exists and is not a socket; refusing to replace it`);
  await unlink(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOENT') throw new FerryError('io', `cannot remove the stale socket ${path}: ${err.message}`, { cause: err });
  });
}
