/**
 * The destination role of `ferry agent`: the replicas this host follows. Each replica is
 * restored from its base (initReplica) and then followed in the background, under the same
 * lock as `ferry replica apply --follow` (yieldable: a cutover takes the replica over and
 * hands it back), until its replication is cut over, it is removed, or the service closes.
 *
 * The replicas are listed in `<stateDir>/replicas.json` (docs/FORMAT.md), so an agent
 * started again follows them again: a replica whose restore was interrupted is restored
 * again (the restore continues where it stopped), one with a replay state is reopened. A
 * replica whose replication was cut over is recorded as such and not followed again.
 *
 * A cutover run by the migration service on another host holds a replica through this
 * service (`hold`): the follower stops, the replica's applier belongs to the cutover's
 * owner, which applies, hashes and commits through it, and lets go (`release`), after
 * which the follower goes on (or ends, once cut over). A hold has a lease that every call
 * renews: a cutover that went away gives the replica back to its follower.
 */
import { readFile, realpath } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { FerryError, Logger, makeDirectory, pathExists, writeFileAtomic, type DiskDigest } from '../core/index.js';
import { ReplicaApplier, type ReplicaState } from '../delta/index.js';
import { checkDiskId, openStore, Repository, type ObjectStore, type S3Settings } from '../store/index.js';
import { initReplica } from './replica-init.js';

export const replicaRegistryVersion = 1;
export const replicaRegistryFile = 'replicas.json';

/** What the lock says holds a replica the agent follows. */
const followerPurpose = 'ferry agent (replica follower)';

export interface ReplicaSpec {
  /** The agent's name for the replica: letters, digits, '.', '_', '-'. */
  id: string;
  /** The disk's id at the source's filter: names its deltas in the store. */
  diskId: string;
  /** The store's URL: file:<dir> or s3://bucket[/prefix]. */
  store: string;
  /** The base copy's or seed's manifest id (or a unique prefix). */
  manifestId: string;
  /** The replica file (absolute); default `<stateDir>/replicas/<id>.img`. */
  path: string;
}

/** One entry of replicas.json. */
interface RegistryEntry extends ReplicaSpec {
  addedAt: string;
  /** 'cut-over': its replication was cut over and the replica holds the final seq; not followed again. */
  state: 'following' | 'cut-over';
}

interface Registry {
  version: typeof replicaRegistryVersion;
  replicas: RegistryEntry[];
}

export type ReplicaRunState = 'restoring' | 'following' | 'held' | 'cut-over' | 'stopped' | 'failed';

export interface ReplicaStatus extends ReplicaSpec {
  addedAt: string;
  state: ReplicaRunState;
  /** The last error: why it failed, or the transient one it retries after. */
  error?: string;
  /** From the replica's replay state, once the base is restored. */
  replication?: string;
  nextSeq?: number;
  consistent?: boolean;
  cutOver: boolean;
  cutoverFinalSeq?: number;
  deltasApplied: number;
  bytesApplied: number;
  /** The cutover that holds the replica, while one does. */
  heldBy?: string;
}

/** A replica held by a cutover: its applier, and the lease that gives it back. */
interface Hold {
  owner: string;
  applier: ReplicaApplier;
  store: ObjectStore;
  leaseMs: number;
  /** Gives the replica back to its follower when the lease runs out unrenewed. */
  timer?: NodeJS.Timeout;
}

export const defaultHoldLeaseMs = 60_000;

export interface ReplicaServiceOptions {
  /** replicas.json goes here. */
  stateDir: string;
  /** S3 settings for s3:// stores (credentials, endpoint); file: stores need none. */
  s3?: S3Settings;
  /** How often a follower looks for deltas (default 500 ms). */
  pollMs?: number;
  /** Downloads in flight while restoring a base (default 8). */
  concurrency?: number;
  logger?: Logger;
}

interface Follower {
  entry: RegistryEntry;
  /** The replica's path with its directory's symlinks resolved: the same file is the same replica. */
  canonicalPath: string;
  state: ReplicaRunState;
  error?: string;
  snapshot?: Readonly<ReplicaState>;
  abort: AbortController;
  done: Promise<void>;
  hold?: Hold;
}

const idPattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export class ReplicaService {
  private readonly followers = new Map<string, Follower>();
  private registryWrite: Promise<unknown> = Promise.resolve();
  private closed = false;

  private constructor(
    private readonly options: ReplicaServiceOptions,
    private readonly logger: Logger,
  ) {}

  get registryPath(): string {
    return join(this.options.stateDir, replicaRegistryFile);
  }

  /** Reads the registry and follows again every replica not cut over. */
  static async open(options: ReplicaServiceOptions): Promise<ReplicaService> {
    const service = new ReplicaService(options, (options.logger ?? Logger.silent()).child({ component: 'replicas' }));
    await makeDirectory(options.stateDir);
    const registry = await readRegistry(service.registryPath);
    for (const entry of registry.replicas) {
      const follower = service.newFollower(entry, await canonicalPath(entry.path));
      if (entry.state === 'cut-over') {
        follower.state = 'cut-over';
        follower.snapshot = await readStateFile(entry.path);
        continue;
      }
      service.follow(follower);
    }
    if (registry.replicas.length > 0) service.logger.info('following replicas again', { replicas: registry.replicas.length });
    return service;
  }

  /**
   * Adds a replica: resolves once its lock is held and its base restore has begun (bad input,
   * an unknown manifest, a path another process follows are refused here); the restore and
   * the following go on in the background.
   */
  async add(input: Omit<ReplicaSpec, 'path'> & { path?: string }): Promise<ReplicaStatus> {
    if (this.closed) throw new FerryError('invalid-state', 'the replica service is closing');
    // Without a path, the replica goes under the state dir, named for its id.
    const spec: ReplicaSpec = { ...input, path: input.path ?? join(this.options.stateDir, 'replicas', `${input.id}.img`) };
    checkSpec(spec);
    if (input.path === undefined) await makeDirectory(dirname(spec.path));
    const path = await canonicalPath(spec.path);
    // Checked after the await and with no other in between, so two requests cannot both pass.
    if (this.followers.has(spec.id)) throw new FerryError('conflict', `replica ${JSON.stringify(spec.id)} exists already (${this.followers.get(spec.id)!.entry.path})`);
    for (const other of this.followers.values()) {
      if (other.canonicalPath === path) throw new FerryError('conflict', `${spec.path} is replica ${JSON.stringify(other.entry.id)} here already`);
    }
    const entry: RegistryEntry = { ...spec, addedAt: new Date().toISOString(), state: 'following' };
    const follower = this.newFollower(entry, path);
    let started!: () => void;
    const locked = new Promise<void>((resolve) => (started = resolve));
    const run = this.run(follower, started, { fresh: true });
    follower.done = run.catch(() => {});
    try {
      await Promise.race([locked, run]);
      if (follower.abort.signal.aborted) throw new FerryError('aborted', `replica ${spec.id}: the replica service closed while it was being added`);
      await this.saveRegistry();
    } catch (err) {
      follower.abort.abort();
      await follower.done;
      this.followers.delete(spec.id);
      throw err;
    }
    this.logger.info('replica added', { id: spec.id, disk: spec.diskId, path: spec.path });
    return this.status(spec.id);
  }

  list(): ReplicaStatus[] {
    return [...this.followers.keys()].map((id) => this.status(id));
  }

  status(id: string): ReplicaStatus {
    const f = this.follower(id);
    const s = f.snapshot;
    return {
      id: f.entry.id,
      diskId: f.entry.diskId,
      store: f.entry.store,
      manifestId: s?.manifestId ?? f.entry.manifestId,
      path: f.entry.path,
      addedAt: f.entry.addedAt,
      state: f.state,
      ...(f.error === undefined ? {} : { error: f.error }),
      ...(s ? { replication: s.replication, nextSeq: s.nextSeq, consistent: s.resync === undefined && s.nextSeq >= s.consistentFromSeq } : {}),
      cutOver: s?.cutover !== undefined,
      ...(s?.cutover ? { cutoverFinalSeq: s.cutover.finalSeq } : {}),
      deltasApplied: s?.deltasApplied ?? 0,
      bytesApplied: s?.bytesApplied ?? 0,
      ...(f.hold ? { heldBy: f.hold.owner } : {}),
    };
  }

  /**
   * A cutover (`owner`) takes the replica: its follower stops and releases the replica's
   * lock, and this service opens the applier for the owner. Holding it again renews the
   * lease; another owner gets 'conflict'. Only a replica being followed (restored, not
   * failed) can be held.
   */
  async hold(id: string, owner: string, leaseMs = defaultHoldLeaseMs): Promise<ReplicaStatus> {
    const f = this.follower(id);
    if (f.hold) {
      this.held(f, owner);
      return this.status(id);
    }
    if (f.state !== 'following' && f.state !== 'cut-over') {
      throw new FerryError('invalid-state', `replica ${id} is ${f.state}${f.error ? ` (${f.error})` : ''}: only a replica being followed can be held for a cutover`);
    }
    f.abort.abort();
    await f.done;
    if (f.hold) return (this.held(f, owner), this.status(id)); // another request of the same moment won
    const store = openStore(f.entry.store, this.options.s3);
    let applier: ReplicaApplier;
    try {
      applier = await ReplicaApplier.open(await Repository.open(store), f.entry.path, { logger: this.logger.child({ replica: id }), lock: { purpose: `ferry agent (held by ${owner})` } });
    } catch (err) {
      await store.close();
      this.follow(f);
      throw err;
    }
    f.hold = { owner, applier, store, leaseMs };
    f.state = 'held';
    f.snapshot = applier.snapshot();
    this.renew(f);
    this.logger.info('replica held for a cutover', { id, owner, leaseMs });
    return this.status(id);
  }

  /** Applies what the store holds (`untilSeq`: until replay reaches it, as a cutover's apply does). */
  async applyHeld(id: string, owner: string, options: { untilSeq?: number; signal?: AbortSignal } = {}): Promise<ReplicaStatus> {
    const f = this.follower(id);
    const { applier } = this.held(f, owner);
    try {
      if (options.untilSeq === undefined) await applier.applyAvailable(options.signal);
      else await applier.applyUntil(options.untilSeq, { signal: options.signal });
    } finally {
      f.snapshot = applier.snapshot();
      this.renew(f);
    }
    return this.status(id);
  }

  async hashHeld(id: string, owner: string, signal?: AbortSignal): Promise<DiskDigest> {
    const f = this.follower(id);
    try {
      return await this.held(f, owner).applier.hash(signal);
    } finally {
      if (f.hold) this.renew(f);
    }
  }

  /** The cutover's commit at the replica (ReplicaApplier.commitCutover). */
  async commitHeld(id: string, owner: string, finalSeq: number, verified: 'full' | 'deltas', signal?: AbortSignal): Promise<ReplicaStatus> {
    const f = this.follower(id);
    const { applier } = this.held(f, owner);
    await applier.commitCutover(finalSeq, verified, signal);
    f.snapshot = applier.snapshot();
    this.renew(f);
    return this.status(id);
  }

  /** The cutover lets go: the follower goes on, or records the cut over. Releasing a replica not held by `owner` is a no-op. */
  async release(id: string, owner: string): Promise<ReplicaStatus> {
    const f = this.follower(id);
    if (f.hold?.owner === owner) await this.letGo(f, 'released');
    return this.status(id);
  }

  private held(f: Follower, owner: string): Hold {
    if (!f.hold) throw new FerryError('invalid-state', `replica ${f.entry.id} is not held (by ${JSON.stringify(owner)} or anyone): hold it first`);
    if (f.hold.owner !== owner) throw new FerryError('conflict', `replica ${f.entry.id} is held by ${JSON.stringify(f.hold.owner)}, not ${JSON.stringify(owner)}`);
    this.renew(f);
    return f.hold;
  }

  private renew(f: Follower): void {
    const hold = f.hold!;
    clearTimeout(hold.timer);
    hold.timer = setTimeout(() => {
      this.logger.warn('the hold of a replica ran out: its follower goes on', { id: f.entry.id, owner: hold.owner, leaseMs: hold.leaseMs });
      void this.letGo(f, 'lease ran out');
    }, hold.leaseMs);
    hold.timer.unref();
  }

  private async letGo(f: Follower, why: string): Promise<void> {
    const hold = f.hold;
    if (!hold) return;
    delete f.hold;
    clearTimeout(hold.timer);
    f.snapshot = hold.applier.snapshot();
    await hold.applier.close();
    await hold.store.close();
    this.logger.info('replica let go by its cutover', { id: f.entry.id, owner: hold.owner, why });
    if (!this.closed) this.follow(f);
  }

  /** Follows the replica again in the background (a replica cut over is recorded so, and ends at once). */
  private follow(f: Follower): void {
    f.state = 'following';
    f.abort = new AbortController();
    f.done = this.run(f, () => {}).catch(() => {});
  }

  /** Stops following the replica and forgets it; the replica file and its state stay. */
  async remove(id: string): Promise<ReplicaStatus> {
    const f = this.follower(id);
    if (f.hold) throw new FerryError('conflict', `replica ${id} is held by cutover ${JSON.stringify(f.hold.owner)}; it is removed once let go`);
    f.abort.abort();
    await f.done;
    const status = this.status(id);
    this.followers.delete(id);
    await this.saveRegistry();
    this.logger.info('replica removed', { id, path: f.entry.path });
    return status;
  }

  /** Stops every follower (each releases its replica's lock); the registry stays for the next start. */
  async close(): Promise<void> {
    this.closed = true;
    for (const f of this.followers.values()) {
      f.abort.abort();
      await this.letGo(f, 'the agent stops');
    }
    await Promise.all([...this.followers.values()].map((f) => f.done));
    await this.registryWrite;
  }

  private follower(id: string): Follower {
    const f = this.followers.get(id);
    if (!f) throw new FerryError('not-found', `no replica ${JSON.stringify(id)} here; this agent follows ${[...this.followers.keys()].join(', ') || 'no replicas'}`);
    return f;
  }

  private newFollower(entry: RegistryEntry, canonicalPath: string): Follower {
    const follower: Follower = { entry, canonicalPath, state: 'restoring', abort: new AbortController(), done: Promise.resolve() };
    this.followers.set(entry.id, follower);
    return follower;
  }

  /**
   * Restores the replica if it has no replay state yet, then follows it. Transient failures
   * (the store unreachable, IO) are retried with backoff; anything else leaves it failed.
   * `locked` is called once the replica's lock is held (or the replica is followed).
   */
  private async run(f: Follower, locked: () => void, options: { fresh?: boolean } = {}): Promise<void> {
    const signal = f.abort.signal;
    const log = this.logger.child({ replica: f.entry.id });
    let failures = 0;
    let fresh = options.fresh === true;
    while (!signal.aborted) {
      let store: ObjectStore | undefined;
      let applier: ReplicaApplier | undefined;
      try {
        store = openStore(f.entry.store, this.options.s3);
        const repo = await Repository.open(store);
        if (fresh || !(await pathExists(ReplicaApplier.statePath(f.entry.path)))) {
          f.state = 'restoring';
          const created = await initReplica({
            repo,
            diskId: f.entry.diskId,
            manifestId: f.entry.manifestId,
            replicaPath: f.entry.path,
            concurrency: this.options.concurrency,
            signal,
            logger: log,
            lock: { purpose: followerPurpose, signal },
            onLocked: locked,
          });
          f.snapshot = created.snapshot();
          await created.close();
          fresh = false;
        }
        applier = await ReplicaApplier.open(repo, f.entry.path, { logger: log, lock: { purpose: followerPurpose, yieldable: true, signal } });
        f.snapshot = applier.snapshot();
        f.state = 'following';
        delete f.error;
        locked();
        failures = 0;
        const current = applier;
        const cutOver = await applier.follow({
          signal,
          pollMs: this.options.pollMs,
          onApplied: () => (f.snapshot = current.snapshot()),
          onRetry: (error) => (f.error = error.message),
        });
        f.snapshot = applier.snapshot();
        if (cutOver) {
          f.state = 'cut-over';
          f.entry.state = 'cut-over';
          log.info('replication cut over: no longer followed', { replication: f.snapshot.replication, finalSeq: f.snapshot.cutover?.finalSeq });
          if (this.followers.get(f.entry.id) === f) await this.saveRegistry();
        } else {
          f.state = 'stopped';
        }
        return;
      } catch (err) {
        if (signal.aborted) {
          f.state = 'stopped';
          return;
        }
        const error = err instanceof FerryError ? err : new FerryError('internal', String(err), { cause: err });
        f.error = error.message;
        // A fresh add reports its failures to the caller; a replica followed already retries
        // what may pass: the store unreachable, IO, or its lock held elsewhere (a cutover
        // that took it while this agent was down).
        const transient = error.code === 'store-unavailable' || error.code === 'io' || error.code === 'conflict';
        if (fresh || !transient) {
          f.state = 'failed';
          log.error('replica failed', { error: error.message });
          throw error;
        }
        failures++;
        log.warn('replica follower failed, will retry', { error: error.message, failures });
      } finally {
        await applier?.close();
        await store?.close();
      }
      await sleep(Math.min(30_000, 500 * 2 ** Math.min(failures, 6)), undefined, { signal }).catch(() => {});
    }
    f.state = 'stopped';
  }

  /** Writes replicas.json from the followers, one write after another. */
  private saveRegistry(): Promise<void> {
    const write = this.registryWrite.then(async () => {
      const registry: Registry = { version: replicaRegistryVersion, replicas: [...this.followers.values()].map((f) => f.entry) };
      await writeFileAtomic(this.registryPath, `${JSON.stringify(registry, null, 2)}\n`);
    });
    this.registryWrite = write.catch(() => {});
    return write;
  }
}

/** Every wrong field of a spec, each with the value received, in one error. */
function checkSpec(spec: ReplicaSpec): void {
  const wrong: string[] = [];
  const check = (field: string, value: unknown, ok: boolean, expected: string) => {
    if (!ok) wrong.push(`${field}: expected ${expected}, received ${JSON.stringify(value) ?? 'nothing'}`);
  };
  check('id', spec.id, typeof spec.id === 'string' && idPattern.test(spec.id), "a name of letters, digits, '.', '_', '-' (up to 128)");
  let diskOk = typeof spec.diskId === 'string';
  if (diskOk) {
    try {
      checkDiskId(spec.diskId);
    } catch {
      diskOk = false;
    }
  }
  check('disk', spec.diskId, diskOk, "the disk's id at the source's filter");
  let storeOk = typeof spec.store === 'string';
  if (storeOk) {
    try {
      openStore(spec.store);
    } catch {
      storeOk = false;
    }
  }
  check('store', spec.store, storeOk, 'file:<dir> or s3://bucket[/prefix]');
  check('manifest', spec.manifestId, typeof spec.manifestId === 'string' && /^[0-9a-f]{1,64}$/.test(spec.manifestId), 'a manifest id (or a unique prefix of it)');
  check('path', spec.path, typeof spec.path === 'string' && isAbsolute(spec.path) && !spec.path.endsWith('/'), 'an absolute path of the replica file');
  if (wrong.length > 0) throw new FerryError('bad-input', wrong.join('; '));
}

/** The same file reached by another path is the same replica. */
async function canonicalPath(path: string): Promise<string> {
  const dir = await realpath(dirname(path)).catch(() => dirname(path));
  return join(dir, basename(path));
}

async function readRegistry(path: string): Promise<Registry> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { version: replicaRegistryVersion, replicas: [] };
    throw new FerryError('io', `${path}: ${(err as Error).message}`, { cause: err });
  }
  let registry: Registry;
  try {
    registry = JSON.parse(text) as Registry;
  } catch (err) {
    throw new FerryError('checksum-mismatch', `replica registry ${path} is damaged: ${(err as Error).message}`, { cause: err });
  }
  if (registry.version !== replicaRegistryVersion) {
    throw new FerryError('unsupported-version', `replica registry ${path} has version ${String(registry.version)}; this ferry reads ${replicaRegistryVersion}`);
  }
  if (!Array.isArray(registry.replicas)) throw new FerryError('checksum-mismatch', `replica registry ${path} is damaged: no "replicas" list`);
  return registry;
}

/** A replica's replay state as last written, for the status of one not followed. */
async function readStateFile(path: string): Promise<ReplicaState | undefined> {
  try {
    return JSON.parse(await readFile(ReplicaApplier.statePath(path), 'utf8')) as ReplicaState;
  } catch {
    return undefined;
  }
}
