/**
 * The migration service's steering: moves every started migration on through the agents,
 * from what the state database says, so a service killed at any moment and started again
 * carries on where it was.
 *
 *   copying      each disk's base copy at the source agent (started, or found running)
 *   replicating  each disk's replica at the destination agent (restored, then followed)
 *   ready        every replica follows its replication and is consistent
 *   cutting over the cutover coordinator, over both agents (hold the replicas, drive the VMs)
 *   done         the cutover ended healthy; a cutover that rolled back makes it ready again
 *
 * Each pass asks the agents where each disk is and acts only on what is missing: a base copy
 * that an agent lost (restarted) is started again, a replica the destination already has is
 * not added twice. An agent that does not answer holds its migration where it is, with an
 * event, until it answers again. The source agent's link rate follows the migration's
 * throttle and its weekly schedule.
 */
import { Logger, asFerryError, formatBytes, parseDuration, parseRate, parseSize, type Database } from '../../core/index.js';
import { Coordinator, CutoverRecords, finalStates, parsePlan, type CutoverPlan, type CutoverRecord, type CutoverReport, type CutoverWiring } from '../../cutover/index.js';
import { AgentVmDriver, heldReplicaPort, sourceDiskPort, type AgentControl } from '../agent-ports.js';
import type { BaseCopyStatus, FilterDiskStatus } from '../filter-service.js';
import type { ReplicaStatus } from '../replica-service.js';
import type { HostRecord, MigrationDiskProgress, MigrationRecord, RateWindow, ServiceRecords, ThrottleSettings } from './records.js';

export interface SteeringOptions {
  records: ServiceRecords;
  /** The database of the records: cutovers are recorded there too. */
  db: Database;
  /** A client of a host's agent. */
  connect(host: HostRecord): AgentControl;
  logger?: Logger;
  /** How often each migration is looked at (default 1 s). */
  pollMs?: number;
  /** Called after each cutover transition is persisted, before it is acted on. */
  onTransition?: (record: CutoverRecord) => void;
}

/** What the service last saw of one disk of a migration. */
export interface DiskProgress extends MigrationDiskProgress {
  baseCopy?: Pick<BaseCopyStatus, 'state' | 'bytesDone' | 'bytesTotal' | 'rateBytesPerSec' | 'manifestId' | 'error'>;
  source?: { mode: string; parked: boolean; consistent: boolean; lagSeconds: number; backlogBytes: number; drainRateBytesPerSec: number; predictedPauseMs: number | null };
  replica?: Pick<ReplicaStatus, 'state' | 'nextSeq' | 'consistent' | 'bytesApplied' | 'error'>;
}

export interface MigrationProgress {
  id: string;
  state: MigrationRecord['state'];
  disks: DiskProgress[];
  /** Base copy bytes still to go, over all disks. */
  bytesToGo: number;
  /** At the base copies' current rate; undefined when unknown. */
  etaSeconds?: number;
  cutover?: CutoverReport;
  /** Transport seed: where the seed is (exported, shipping, imported), and how far its job is. */
  seed?: { phase: 'export' | 'shipping' | 'import'; state?: string; bytesDone?: number; bytesTotal?: number; rateBytesPerSec?: number };
  atMs: number;
}

/** What ends a migration as failed; anything else holds it where it is until it passes. */
class MigrationFailure extends Error {}

/** Base copies a migration runs at once at its source host. */
export const baseCopiesAtOnce = 4;

const steeredStates: ReadonlyArray<MigrationRecord['state']> = ['copying', 'replicating', 'ready', 'cutting over'];

export class Steering {
  private readonly abort = new AbortController();
  private readonly cutovers: CutoverRecords;
  private readonly logger: Logger;
  private readonly pollMs: number;
  /** Coordinators running in this process, by migration. */
  private readonly running = new Map<string, Promise<void>>();
  private readonly progress = new Map<string, MigrationProgress>();
  /** The last trouble noted per migration: the same one is not noted again every pass. */
  private readonly trouble = new Map<string, string>();
  /** The rate last set at each migration's source agent. */
  private readonly rates = new Map<string, number>();
  /** Migrations whose backpressure settings the source agent has. */
  private readonly backpressured = new Set<string>();
  private loop: Promise<void> | undefined;
  private wake: (() => void) | undefined;

  constructor(private readonly options: SteeringOptions) {
    this.cutovers = new CutoverRecords(options.db);
    this.logger = (options.logger ?? Logger.silent()).child({ component: 'steering' });
    this.pollMs = options.pollMs ?? 1000;
  }

  start(): void {
    this.loop ??= this.run();
  }

  /** Looks at the migrations now rather than at the next poll (after an API request changed one). */
  poke(): void {
    this.wake?.();
  }

  /** Stops steering; running cutovers stop where they are (and are resumed by the next start). */
  async stop(): Promise<void> {
    this.abort.abort();
    this.wake?.();
    await this.loop;
    await Promise.allSettled(this.running.values());
  }

  /** The last progress seen of a migration (undefined before its first pass). */
  progressOf(id: string): MigrationProgress | undefined {
    return this.progress.get(id);
  }

  /** The cutover records (for the API's go and cancel). */
  get cutoverRecords(): CutoverRecords {
    return this.cutovers;
  }

  private async run(): Promise<void> {
    while (!this.abort.signal.aborted) {
      await this.pass();
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, this.pollMs);
        this.wake = () => (clearTimeout(timer), resolve());
      });
    }
  }

  /** One look at every steered migration. */
  async pass(): Promise<void> {
    const migrations = this.options.records.listMigrations().filter((m) => steeredStates.includes(m.state));
    await Promise.all(migrations.map((m) => this.step(m)));
  }

  private async step(m: MigrationRecord): Promise<void> {
    try {
      if (m.state === 'cutting over') return this.watchCutover(m);
      const source = this.options.connect(this.options.records.getHost(m.sourceHost));
      const destination = this.options.connect(this.options.records.getHost(m.destinationHost));
      await this.applyThrottle(m, source);
      const disks = await this.look(m, source, destination);
      if (await this.park(m, source, disks)) return;
      if (m.state === 'copying' && m.settings.transport.mode === 'seed') await this.seed(m, source, destination, disks);
      else if (m.state === 'copying') await this.copy(m, source, disks);
      else if (m.state === 'replicating') await this.replicate(m, destination, disks);
      else if (m.state === 'ready' && m.cutoverRequested) this.beginCutover(m, source, destination, disks);
      this.trouble.delete(m.id);
    } catch (err) {
      if (this.abort.signal.aborted) return;
      if (err instanceof MigrationFailure) {
        this.fail(m, err.message);
        return;
      }
      // An agent that does not answer (or refuses, or errs) may be restarting or being
      // fixed: the migration waits where it is, and says why.
      const error = asFerryError(err);
      const text = `waiting: ${error.message}`;
      if (this.trouble.get(m.id) !== text) {
        this.trouble.set(m.id, text);
        this.options.records.addEvent(m.id, text);
        this.logger.warn('migration waits', { migration: m.id, error: error.message });
      }
    }
  }

  /** Asks both agents where each disk is, and keeps it as the migration's progress. */
  private async look(m: MigrationRecord, source: AgentControl, destination: AgentControl): Promise<DiskProgress[]> {
    const disks: DiskProgress[] = [];
    for (const row of this.options.records.migrationDisks(m.id)) {
      const d: DiskProgress = { ...row };
      const status = await source.disk(row.disk, { signal: this.abort.signal });
      d.source = sourceFigures(status);
      if (status.baseCopy) d.baseCopy = pick(status.baseCopy, ['state', 'bytesDone', 'bytesTotal', 'rateBytesPerSec', 'manifestId', 'error']);
      if (m.state !== 'copying') {
        const replica = await destination.replica(row.replicaId, { signal: this.abort.signal }).catch((err: unknown) => {
          if (asFerryError(err).code === 'not-found') return undefined;
          throw err;
        });
        if (replica) d.replica = pick(replica, ['state', 'nextSeq', 'consistent', 'bytesApplied', 'error']);
        // Added by a service that died before it wrote down where: the agent knows.
        if (replica && !d.replicaPath) {
          this.options.records.updateMigrationDisk(m.id, row.disk, { replicaPath: replica.path });
          d.replicaPath = replica.path;
        }
      }
      disks.push(d);
    }
    const toGo = disks.reduce((n, d) => n + (d.manifestId ? 0 : Math.max(0, (d.baseCopy?.bytesTotal ?? 0) - (d.baseCopy?.bytesDone ?? 0))), 0);
    const rate = disks.reduce((n, d) => n + (d.baseCopy?.state === 'running' ? d.baseCopy.rateBytesPerSec : 0), 0);
    this.progress.set(m.id, { id: m.id, state: m.state, disks, bytesToGo: toGo, ...(rate > 0 ? { etaSeconds: toGo / rate } : {}), atMs: Date.now() });
    return disks;
  }

  private async copy(m: MigrationRecord, source: AgentControl, disks: DiskProgress[]): Promise<void> {
    const { records } = this.options;
    let running = disks.filter((d) => !d.manifestId && d.baseCopy?.state === 'running').length;
    for (const d of disks) {
      if (d.manifestId) continue;
      const copy = d.baseCopy;
      if (copy?.state === 'running') continue;
      if (copy?.state === 'done' && copy.manifestId) {
        records.updateMigrationDisk(m.id, d.disk, { manifestId: copy.manifestId });
        d.manifestId = copy.manifestId;
        records.addEvent(m.id, `base copy of ${d.vm}/${d.disk} done: ${formatBytes(copy.bytesTotal)}, manifest ${copy.manifestId.slice(0, 12)}`);
        continue;
      }
      // A few copies at a time: each reads its disk in order and holds its own buffers.
      if (running >= baseCopiesAtOnce) continue;
      if (copy?.state === 'failed') records.addEvent(m.id, `base copy of ${d.vm}/${d.disk} failed, starting it again: ${copy.error?.message ?? 'no reason given'}`);
      await source.startBaseCopy(d.disk, {}, { signal: this.abort.signal });
      running++;
      if (!copy) records.addEvent(m.id, `base copy of ${d.vm}/${d.disk} started`);
    }
    if (disks.every((d) => d.manifestId)) {
      records.transition(m.id, 'replicating', 'every base copy is in the store: replicas are restored at the destination and follow the changes');
      this.poke();
    }
  }

  /**
   * Transport seed: the source agent exports the disks onto the device (they stay parked:
   * their changes are tracked, nothing ships); the operator ships it and says where it
   * arrived; the destination agent imports it into the store, and its manifests are the
   * disks' bases. A device whose import found chunks corrupt or missing is asked for again.
   */
  private async seed(m: MigrationRecord, source: AgentControl, destination: AgentControl, disks: DiskProgress[]): Promise<void> {
    const { records } = this.options;
    const seed = m.seed ?? {};
    const device = (m.settings.transport as { device: string }).device;
    const progress = this.progress.get(m.id)!;
    if (!seed.seedId) {
      const exported = await source.seedExport({ signal: this.abort.signal }).catch(orNotFound);
      const ours = exported?.deviceDir === device && disks.every((d) => exported.disks.includes(d.disk));
      if (ours && exported.state !== 'failed') progress.seed = { phase: 'export', ...pick(exported, ['state', 'bytesDone', 'bytesTotal', 'rateBytesPerSec']) };
      if (ours && exported.state === 'running') return;
      if (ours && exported.state === 'done') {
        records.updateSeed(m.id, { seedId: exported.seedId }, `seed ${exported.seedId} exported onto ${device} (${exported.volumes} volume(s)): ship the device, then say where it arrived (POST /v1/migrations/${m.id}/seed/arrived)`);
        return;
      }
      if (ours) records.addEvent(m.id, `seed export onto ${device} failed, starting it again: ${exported.error?.message ?? 'no reason given'}`);
      await source.startSeedExport({ device, disks: disks.map((d) => d.disk) }, { signal: this.abort.signal });
      if (!ours) records.addEvent(m.id, `seed export of ${disks.length} disk(s) onto ${device} started at the source host; the disks are parked until the replicas follow`);
      return;
    }
    if (!seed.arrivedDevice) return void (progress.seed = { phase: 'shipping' });
    const imported = await destination.seedImport({ signal: this.abort.signal }).catch(orNotFound);
    if (imported?.deviceDir !== seed.arrivedDevice || (imported.state !== 'running' && imported.seedId !== undefined && imported.seedId !== seed.seedId)) {
      await destination.startSeedImport({ device: seed.arrivedDevice, store: records.getStore(m.store).url }, { signal: this.abort.signal });
      records.addEvent(m.id, `seed import of ${seed.arrivedDevice} into the store started at the destination host`);
      return;
    }
    progress.seed = { phase: 'import', ...pick(imported, ['state', 'bytesDone', 'bytesTotal', 'rateBytesPerSec']) };
    if (imported.state === 'running') return;
    if (imported.state === 'failed' || !imported.complete || imported.seedId !== seed.seedId) {
      const why = imported.error?.message ?? (imported.seedId !== seed.seedId ? `it holds seed ${imported.seedId}, not ${seed.seedId}` : imported.tampered?.length ? `${imported.tampered.join(', ')} changed after the export (tampered)` : `${imported.corrupt} chunk(s) corrupt, ${imported.missing} missing`);
      records.updateSeed(m.id, { arrivedDevice: undefined }, `the seed on ${seed.arrivedDevice} did not import (${why}): repair the device (ferry seed repair) or bring another copy, and say where it is again`);
      return;
    }
    for (const d of disks) {
      const manifest = imported.manifests?.find((w) => w.diskId === d.disk);
      if (!manifest) throw new MigrationFailure(`the seed ${seed.seedId} holds no disk ${d.disk}`);
      records.updateMigrationDisk(m.id, d.disk, { manifestId: manifest.manifestId });
    }
    records.updateSeed(m.id, { imported: true }, `seed ${seed.seedId} imported into the store: replicas are restored from it, then the changes since follow`);
    records.transition(m.id, 'replicating', 'the seed is in the store: replicas are restored at the destination and follow the changes');
    this.poke();
  }

  private async replicate(m: MigrationRecord, destination: AgentControl, disks: DiskProgress[]): Promise<void> {
    const { records } = this.options;
    const store = records.getStore(m.store);
    for (const d of disks) {
      if (d.replica) continue;
      const wanted = m.settings.vms.find((vm) => vm.name === d.vm)?.disks.find((disk) => disk.id === d.disk)?.replica;
      const added = await destination.addReplica({ id: d.replicaId, disk: d.disk, store: store.url, manifest: d.manifestId!, ...(wanted ? { path: wanted } : {}) }, { signal: this.abort.signal });
      records.updateMigrationDisk(m.id, d.disk, { replicaPath: added.path });
      records.addEvent(m.id, `replica of ${d.vm}/${d.disk} added at the destination: ${added.path}`);
      d.replica = pick(added, ['state', 'nextSeq', 'consistent', 'bytesApplied', 'error']);
    }
    const failed = disks.find((d) => d.replica?.state === 'failed');
    if (failed) throw new MigrationFailure(`the replica of ${failed.vm}/${failed.disk} failed at the destination: ${failed.replica?.error ?? 'no reason given'}`);
    if (disks.every((d) => d.replica?.state === 'following' && d.replica.consistent)) {
      records.transition(m.id, 'ready', 'every replica follows its disk and is consistent: ready for the cutover');
      this.poke();
    }
  }

  /**
   * A paused migration's source disks are parked in bitmap mode (their changes are tracked,
   * nothing ships); once it goes on, they stream again (a resync ships what changed).
   * True while the migration is paused: nothing else of it moves on.
   */
  private async park(m: MigrationRecord, source: AgentControl, disks: DiskProgress[]): Promise<boolean> {
    // A seed in transit keeps its disks parked (the export parked them) until the replicas follow.
    const seeding = m.settings.transport.mode === 'seed' && m.state === 'copying';
    for (const d of disks) {
      if (!d.source || d.source.parked === m.paused || (seeding && !m.paused)) continue;
      await source.setMode(d.disk, m.paused ? 'bitmap' : 'streaming', m.paused ? `migration ${m.id} paused` : `migration ${m.id} goes on`, { signal: this.abort.signal });
      this.options.records.addEvent(m.id, m.paused ? `${d.vm}/${d.disk} parked: its changes are tracked, nothing ships` : `${d.vm}/${d.disk} streams again (a resync ships what changed)`);
    }
    return m.paused;
  }

  /** Makes the cutover plan of a ready migration, records the cutover, and runs it. */
  private beginCutover(m: MigrationRecord, source: AgentControl, destination: AgentControl, disks: DiskProgress[]): void {
    let plan: CutoverPlan;
    try {
      plan = this.plan(m, source, disks);
    } catch (err) {
      throw new MigrationFailure(asFerryError(err).message);
    }
    const record = this.cutovers.create(plan);
    const started = this.options.records.beginCutover(m.id, record.id);
    this.logger.info('cutover begun', { migration: m.id, cutover: record.id });
    this.coordinate(started, source, destination);
  }

  /** A migration cutting over: its coordinator runs here, or is started again (after a restart). */
  private watchCutover(m: MigrationRecord): void {
    if (this.running.has(m.id)) return;
    const { records } = this.options;
    this.coordinate(m, this.options.connect(records.getHost(m.sourceHost)), this.options.connect(records.getHost(m.destinationHost)));
  }

  private coordinate(m: MigrationRecord, source: AgentControl, destination: AgentControl): void {
    const id = m.cutoverId!;
    const replicaIds = new Map(this.options.records.migrationDisks(m.id).map((d) => [d.disk, d.replicaId]));
    const leaseMs = this.cutovers.get(id).plan.schedule.leaseMs;
    // The replicas are held in the cutover's name, not its run's: a run started again after
    // the service died takes over the holds of the run before it (one runs at a time).
    const holder = `ferry serve: cutover ${id}`;
    const wiring: CutoverWiring = {
      async openDisk(_vm, disk, owner, signal) {
        const replica = await heldReplicaPort(destination, replicaIds.get(disk.id)!, holder, { signal });
        return { source: sourceDiskPort(source, disk.id, owner, leaseMs), replica };
      },
      driver: (vm, side) => new AgentVmDriver(side === 'source' ? source : destination, vm, side),
    };
    const coordinator = new Coordinator({ records: this.cutovers, wiring, signal: this.abort.signal, pollMs: Math.min(this.pollMs, 500), onTransition: this.options.onTransition });
    const run = coordinator
      .run(id)
      .then((report) => this.finishCutover(m, report))
      .catch((err: unknown) => {
        if (!this.abort.signal.aborted) this.logger.error('cutover coordinator failed; it is started again', { migration: m.id, cutover: id, error: asFerryError(err).message });
      })
      .finally(() => this.running.delete(m.id));
    this.running.set(m.id, run);
  }

  private finishCutover(m: MigrationRecord, report: CutoverReport): void {
    if (this.abort.signal.aborted && !finalStates.includes(report.state)) return; // stopped: resumed at the next start
    const { records } = this.options;
    const committed = this.cutovers.events(report.id).some((e) => e.state === 'committed');
    if (report.state === 'healthy') records.transition(m.id, 'done', `cutover ${report.id} healthy: the VMs run at the destination`);
    else if (!committed) records.cutoverRolledBack(m.id, `cutover ${report.id} ${report.state}${report.error ? `: ${report.error}` : ''}; the sources run, the replicas follow again`);
    else records.transition(m.id, 'failed', `cutover ${report.id} ${report.state} after its commit: ${report.error ?? 'no reason given'}`, report.error);
    const progress = this.progress.get(m.id);
    if (progress) progress.cutover = report;
  }

  /** The migration as a cutover plan (docs/FORMAT.md), checked as a plan file is. */
  private plan(m: MigrationRecord, source: AgentControl, disks: DiskProgress[]): CutoverPlan {
    const store = this.options.records.getStore(m.store);
    const { cutover, runbook } = m.settings;
    const raw = {
      version: 1,
      name: `migration-${m.id}`,
      store: store.url,
      vms: m.settings.vms.map((vm) => ({
        name: vm.name,
        disks: vm.disks.map((disk) => ({ id: disk.id, control: source.address, replica: disks.find((d) => d.disk === disk.id)!.replicaPath! })),
        source: vm.source,
        destination: vm.destination,
        ...(vm.health ? { health: vm.health } : {}),
      })),
      ...(runbook ? { runbook } : {}),
      schedule: {
        ...(cutover.at ? { at: cutover.at } : {}),
        window: cutover.window,
        budget: cutover.budget,
        hold: cutover.hold,
        ...(cutover.verify ? { verify: cutover.verify } : {}),
        ...(cutover.maxLagSeconds !== undefined ? { maxLagSeconds: cutover.maxLagSeconds } : {}),
      },
    };
    return parsePlan(JSON.stringify(raw), `the cutover plan of migration ${m.id}`);
  }

  /** The source agent's link rate (its schedule's, now) and the disks' backpressure, as the migration says. */
  private async applyThrottle(m: MigrationRecord, source: AgentControl): Promise<void> {
    const rate = rateAt(m.settings.throttle, new Date());
    if (this.rates.get(m.id) !== rate) {
      await source.setRate(rate, { signal: this.abort.signal });
      this.rates.set(m.id, rate);
      this.options.records.addEvent(m.id, `link rate at the source host: ${rate === 0 ? 'unlimited' : `${formatBytes(rate)}/s`}`);
    }
    const wanted = m.settings.backpressure;
    if (!wanted || this.backpressured.has(m.id)) return;
    const level = {
      ...(wanted.highWater ? { highWaterBytes: parseSize(wanted.highWater, 'backpressure.highWater') } : {}),
      ...(wanted.maxDelay ? { maxDelayMs: parseDuration(wanted.maxDelay, 'backpressure.maxDelay') } : {}),
    };
    for (const vm of m.settings.vms) for (const disk of vm.disks) await source.setBackpressure(disk.id, level, { signal: this.abort.signal });
    this.backpressured.add(m.id);
    this.options.records.addEvent(m.id, `backpressure at the source disks: ${[wanted.highWater && `above ${wanted.highWater}`, wanted.maxDelay && `at most ${wanted.maxDelay}`].filter(Boolean).join(', ')}`);
  }

  /**
   * Undoes what a cancelled migration set going at the hosts, as far as it may: the
   * destination stops following its replicas. Says what was done and what was kept.
   */
  async cleanUp(m: MigrationRecord): Promise<string> {
    const destination = this.options.connect(this.options.records.getHost(m.destinationHost));
    const stopped: string[] = [];
    const failed: string[] = [];
    for (const d of this.options.records.migrationDisks(m.id)) {
      if (!d.replicaPath) continue;
      try {
        await destination.removeReplica(d.replicaId);
        stopped.push(d.replicaPath);
      } catch (err) {
        if (asFerryError(err).code === 'not-found') stopped.push(d.replicaPath);
        else failed.push(`${d.replicaPath} (${asFerryError(err).message})`);
      }
    }
    return [
      stopped.length > 0 ? `the destination stopped following ${stopped.length} replica(s), kept as files: ${stopped.join(', ')}` : 'no replica had been made',
      ...(failed.length > 0 ? [`could not reach the destination to stop following: ${failed.join(', ')}`] : []),
      'kept: the base copies in the store (a new migration of these disks reuses their chunks), and the source disks, still served and captured by the source agent',
    ].join('; ');
  }

  private fail(m: MigrationRecord, message: string): void {
    this.options.records.transition(m.id, 'failed', `failed: ${message}`, message);
    this.logger.error('migration failed', { migration: m.id, error: message });
  }
}

/** The throttle's rate at `now` in bytes/s (0: unlimited): the first schedule window that covers it, else its rate. */
export function rateAt(throttle: ThrottleSettings, now: Date): number {
  const day = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'][now.getUTCDay()] as RateWindow['days'][number];
  const minute = now.getUTCHours() * 60 + now.getUTCMinutes();
  const toMinutes = (hhmm: string) => Number(hhmm.slice(0, 2)) * 60 + Number(hhmm.slice(3, 5));
  const window = throttle.schedule.find((w) => w.days.includes(day) && toMinutes(w.from) <= minute && minute < toMinutes(w.to));
  return parseRate(window?.rate ?? throttle.rate, 'rate');
}

function sourceFigures(s: FilterDiskStatus): DiskProgress['source'] {
  const f = s.figures;
  return {
    mode: s.tracker.mode,
    parked: s.parked,
    consistent: s.tracker.consistent,
    lagSeconds: f.lagSeconds,
    backlogBytes: f.backlogBytes,
    drainRateBytesPerSec: f.drainRateBytesPerSec,
    predictedPauseMs: Number.isFinite(f.predictedPauseMs) ? f.predictedPauseMs : null,
  };
}

/** A status the agent does not have (nothing was started there, or it restarted) is undefined. */
function orNotFound(err: unknown): undefined {
  if (asFerryError(err).code === 'not-found') return undefined;
  throw err;
}

function pick<T extends object, K extends keyof T>(value: T, keys: K[]): Pick<T, K> {
  const out = {} as Pick<T, K>;
  for (const key of keys) if (value[key] !== undefined) out[key] = value[key];
  return out;
}
