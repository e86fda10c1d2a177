/**
 * The cutover coordinator: moves a group of VMs (a plan) from the source to the
 * destination, all together, inside a window and a downtime budget.
 *
 *   planned -> waiting (for the window) -> pre-checks [-> held, for the operator's go]
 *   -> pausing -> draining -> applying -> verifying -> committed -> starting -> running -> healthy
 *
 * Every transition is persisted (cutover-records.ts) before it is acted on. Up to the
 * commit, any failure (or a cancel) rolls back: the source disks and VMs resume and nothing
 * starts at the destination. `committed` is the commit point of the whole group, written
 * once every disk of every VM is drained, applied and verified; from there the cutover only
 * rolls forward: each source disk is fenced, each source VM stopped, the replications marked
 * cut over, and the destination VMs started in runbook order. The source and the
 * destination of a VM never run together.
 *
 * Killed at any point and run again (`resume`), the coordinator reads where it was: before
 * `pausing` it carries on; between `pausing` and `verifying` it rolls back (it cannot know
 * what the dead run's quiesces saw); from `committed` on it rolls forward, and asks a
 * destination's hypervisor for a start only when that VM is not running there.
 * Interrupted on purpose (its signal), it rolls back if it is between pausing and the
 * commit, and otherwise leaves the cutover where it is, for `resume`.
 *
 * It sees disks and hypervisors only through ports (CutoverWiring): the CLI wires them to
 * `ferry filter` control sockets, replica appliers and the VM drivers.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { FerryError, asFerryError } from '../core/index.js';
import { CutoverRecords, finalStates, isCommitted, type CutoverRecord, type CutoverState, type DiskRecord, type VmRecord } from './cutover-records.js';
import { verifyWhole, type CutoverReplica, type CutoverSource } from './disk-cutover.js';
import type { CutoverPlan, DiskPlan, VmPlan } from './plan.js';
import type { VmDriver } from './vm-driver.js';

/** A source disk as the pre-checks and the roll forward see it. */
export interface SourceDiskStatus {
  replication: string;
  mode: 'streaming' | 'bitmap';
  consistent: boolean;
  currentSeq: number;
  /** Age of the oldest change not yet in the store. */
  lagSeconds: number;
  /** Predicted pause to drain what is waiting, at the measured rate; Infinity when unknown. */
  predictedPauseMs: number;
  quiesceOwner?: string;
  fence?: { replication: string; finalSeq: number };
  backpressure: BackpressureLevel;
}

/** A source disk's write backpressure: acknowledgements slow down above the high-water mark. */
export interface BackpressureLevel {
  highWaterBytes: number;
  maxDelayMs: number;
}

export interface CoordinatedSource extends CutoverSource {
  status(signal?: AbortSignal): Promise<SourceDiskStatus>;
  /** Resumes the disk if a quiesce whose owner starts with `ownerPrefix` holds it (a dead run's). */
  resumeOwnedBy(ownerPrefix: string, signal?: AbortSignal): Promise<void>;
  setBackpressure(level: BackpressureLevel, signal?: AbortSignal): Promise<void>;
}

export interface ReplicaStatus {
  replication: string;
  nextSeq: number;
  consistent: boolean;
  /** Set once the replication was cut over into this replica. */
  cutOverAtSeq?: number;
}

export interface CoordinatedReplica extends CutoverReplica {
  /** Applies what the store holds now (keeps the replica warm while the pre-checks wait). */
  catchUp(signal?: AbortSignal): Promise<void>;
  status(): ReplicaStatus;
  /** Lets go of the replica (a follower takes it back). */
  close(): Promise<void>;
}

export interface CutoverDiskPorts {
  source: CoordinatedSource;
  replica: CoordinatedReplica;
}

export interface CutoverWiring {
  /** The ports of one disk; the replica is held (its applier's lock) until closed. */
  openDisk(vm: VmPlan, disk: DiskPlan, owner: string, signal?: AbortSignal): Promise<CutoverDiskPorts>;
  driver(vm: VmPlan, side: 'source' | 'destination'): VmDriver;
}

export interface CoordinatorOptions {
  records: CutoverRecords;
  wiring: CutoverWiring;
  signal?: AbortSignal;
  /** How often waits look at the clock, the store and the operator's flags (default 1 s). */
  pollMs?: number;
  /** Called after each transition is persisted, before it is acted on. */
  onTransition?: (record: CutoverRecord) => void;
}

export interface VmReport {
  vm: string;
  progress: VmRecord['progress'];
  /** Source paused to destination running, and to healthy (ms). */
  downtimeToRunningMs?: number;
  downtimeToHealthyMs?: number;
  finalBytes: number;
  disks: Array<{ disk: string; finalSeq?: number; verified?: string; sha256?: string; fenced: boolean; finalBytes?: number }>;
  error?: string;
}

export interface CutoverReport {
  id: string;
  plan: string;
  state: CutoverState;
  error?: string;
  vms: VmReport[];
  /** The group: the longest downtime of its VMs, and the final bytes of all disks. */
  maxDowntimeToRunningMs?: number;
  maxDowntimeToHealthyMs?: number;
  finalBytes: number;
}

/** A disk of the plan with its VM, in plan order. */
interface PlanDisk {
  vm: VmPlan;
  disk: DiskPlan;
}

class Cancelled extends Error {}

export class Coordinator {
  private readonly records: CutoverRecords;
  private readonly pollMs: number;
  private record!: CutoverRecord;
  private plan!: CutoverPlan;
  private owner = '';
  private readonly ports = new Map<string, CutoverDiskPorts>();
  /** Backpressure of the disks the pre-checks tightened, as it was: put back at the end. */
  private readonly loosened = new Map<string, BackpressureLevel>();

  constructor(private readonly options: CoordinatorOptions) {
    this.records = options.records;
    this.pollMs = options.pollMs ?? 1000;
  }

  /** Runs (or, after a crash, resumes) cutover `id` to its end and reports it. */
  async run(id: string): Promise<CutoverReport> {
    this.record = this.records.get(id);
    this.plan = this.record.plan;
    if (finalStates.includes(this.record.state)) return report(this.records, id);
    const run = this.records.beginRun(id);
    this.owner = `${this.ownerPrefix}run ${run}`;
    const state = this.record.state;
    try {
      if (isCommitted(state)) {
        if (run > 1) this.records.note(id, `run ${run} picks up at ${state}: rolling forward`);
        await this.rollForward();
      } else if (['pausing', 'draining', 'applying', 'verifying'].includes(state)) {
        await this.rollBack(new FerryError('aborted', `the coordinator stopped while ${state}`));
      } else {
        await this.prepareAndCommit();
      }
    } finally {
      await this.closePorts();
    }
    return report(this.records, id);
  }

  private async prepareAndCommit(): Promise<void> {
    try {
      await this.waitForWindow();
      await this.preChecks();
    } catch (err) {
      // Nothing was paused: the sources simply keep running.
      await this.restoreBackpressure();
      if (this.interrupted) throw err; // nothing to undo: 'resume' carries on from here
      const cancelled = err instanceof Cancelled;
      const message = cancelled ? 'cancelled by the operator before anything was paused' : asFerryError(err).message;
      this.transition(cancelled ? 'rolled back' : 'failed', message, message);
      return;
    }
    try {
      await this.pauseSources();
      await this.drain();
      await this.apply();
      await this.verify();
      this.checkCancel();
    } catch (err) {
      await this.rollBack(err);
      return;
    } finally {
      await this.restoreBackpressure();
    }
    this.transition('committed', 'every disk is drained, applied and verified: the destination takes over');
    await this.rollForward();
  }

  private async waitForWindow(): Promise<void> {
    const { atMs } = this.plan.schedule;
    if (atMs !== undefined && atMs > Date.now()) {
      this.transition('waiting', `waiting for ${new Date(atMs).toISOString()}`);
      while (Date.now() < atMs) {
        this.checkCancel();
        await this.sleep(Math.min(this.pollMs, atMs - Date.now()));
      }
    }
  }

  /** The end of the window: the cutover gives up if it has not paused by then. */
  private get deadlineMs(): number {
    return (this.plan.schedule.atMs ?? this.record.createdAtMs) + this.plan.schedule.windowMs;
  }

  /**
   * Opens every disk and waits until all are ready: streaming and consistent, replicas of
   * the replication their source captures, lag and predicted pause within bounds. Replicas
   * are kept applying meanwhile. Then, if the plan says so, waits for the operator's go.
   */
  private async preChecks(): Promise<void> {
    const { schedule } = this.plan;
    this.transition('pre-checks', `budget ${schedule.budgetMs} ms, lag at most ${schedule.maxLagSeconds} s, window until ${new Date(this.deadlineMs).toISOString()}`);
    // What would only fail after the commit is checked now, while the way back is free.
    for (const vm of this.plan.vms) {
      await this.options.wiring.driver(vm, 'source').check(this.options.signal);
      await this.options.wiring.driver(vm, 'destination').check(this.options.signal);
    }
    for (const { vm, disk } of this.disks()) await this.openDisk(vm, disk);
    let lastReasons = '';
    for (;;) {
      this.checkCancel();
      const reasons: string[] = [];
      let predictedMs = 0;
      for (const { vm, disk } of this.disks()) {
        const { source, replica } = this.portsOf(vm, disk);
        await replica.catchUp(this.options.signal);
        const s = await source.status(this.options.signal);
        const r = replica.status();
        const name = `${vm.name}/${disk.id}`;
        if (s.fence) throw new FerryError('invalid-state', `${name}: the source is fenced (cut over at seq ${s.fence.finalSeq})`);
        if (r.cutOverAtSeq !== undefined) throw new FerryError('invalid-state', `${name}: the replica ${disk.replica} is already cut over`);
        if (s.replication !== r.replication) {
          throw new FerryError('conflict', `${name}: the source captures replication ${s.replication}, the replica ${disk.replica} follows ${r.replication}`);
        }
        if (s.mode !== 'streaming' || !s.consistent) reasons.push(`${name}: ${s.mode}, ${s.consistent ? 'consistent' : 'a resync is under way'}`);
        else if (!r.consistent) reasons.push(`${name}: the replica is not consistent yet`);
        if (s.lagSeconds > schedule.maxLagSeconds) reasons.push(`${name}: ${s.lagSeconds.toFixed(1)} s behind`);
        predictedMs = Math.max(predictedMs, s.predictedPauseMs);
        if (s.predictedPauseMs > schedule.budgetMs) await this.tighten(vm, disk, s.backpressure);
      }
      if (predictedMs > schedule.budgetMs) reasons.push(`predicted pause ${Number.isFinite(predictedMs) ? Math.round(predictedMs) : '?'} ms is over the budget of ${schedule.budgetMs} ms`);
      if (reasons.length === 0) {
        this.records.note(this.record.id, `pre-checks passed: predicted pause ${Math.round(predictedMs)} ms`);
        break;
      }
      const text = reasons.join('; ');
      if (text !== lastReasons) this.records.note(this.record.id, `waiting: ${text}`);
      lastReasons = text;
      if (Date.now() >= this.deadlineMs) throw new FerryError('aborted', `the window ended before the cutover could start (nothing was paused): ${text}`);
      await this.sleep(this.pollMs);
    }
    if (schedule.hold) {
      this.transition('held', 'ready: waiting for the operator (ferry cutover go)');
      while (!this.records.get(this.record.id).go) {
        this.checkCancel();
        if (Date.now() >= this.deadlineMs) throw new FerryError('aborted', 'the window ended while held for the operator (nothing was paused)');
        await this.sleep(this.pollMs);
      }
    }
  }

  /**
   * A disk whose predicted pause is over the budget writes faster than its link drains:
   * its writes are slowed more (half the high-water mark, twice the delay, within bounds),
   * so the backlog shrinks while the window lasts.
   */
  private async tighten(vm: VmPlan, disk: DiskPlan, level: BackpressureLevel): Promise<void> {
    const next = { highWaterBytes: Math.max(1 << 20, Math.floor(level.highWaterBytes / 2)), maxDelayMs: Math.min(1000, Math.max(20, level.maxDelayMs * 2)) };
    if (next.highWaterBytes === level.highWaterBytes && next.maxDelayMs === level.maxDelayMs) return;
    if (!this.loosened.has(key(vm, disk))) this.loosened.set(key(vm, disk), level);
    await this.portsOf(vm, disk).source.setBackpressure(next, this.options.signal);
    this.records.note(this.record.id, `${vm.name}/${disk.id}: backpressure tightened to ${next.highWaterBytes} bytes, up to ${next.maxDelayMs} ms a write`);
  }

  private async restoreBackpressure(): Promise<void> {
    for (const { vm, disk } of this.disks()) {
      const level = this.loosened.get(key(vm, disk));
      if (!level) continue;
      this.loosened.delete(key(vm, disk));
      await this.portsOf(vm, disk).source.setBackpressure(level).catch(() => undefined);
    }
  }

  /** Pauses every source VM (its IO drained), then quiesces every disk under this run's lease. */
  private async pauseSources(): Promise<void> {
    this.transition('pausing', `pausing ${this.plan.vms.map((vm) => vm.name).join(', ')}`);
    await Promise.all(
      this.plan.vms.map(async (vm) => {
        // Recorded before the hypervisor is asked: a rollback resumes every VM that may be paused.
        this.records.updateVm(this.record.id, vm.name, { progress: 'paused' });
        await this.options.wiring.driver(vm, 'source').pause(this.options.signal);
        this.records.updateVm(this.record.id, vm.name, { pausedAtMs: Date.now() });
      }),
    );
    await Promise.all(this.disks().map(({ vm, disk }) => this.portsOf(vm, disk).source.quiesce()));
  }

  private async drain(): Promise<void> {
    this.transition('draining', 'sealing and shipping the final deltas');
    await Promise.all(
      this.disks().map(async ({ vm, disk }) => {
        const { source, replica } = this.portsOf(vm, disk);
        const { finalSeq, bytes } = await source.drainFinal(this.options.signal);
        // The pre-checks saw the source capture the replication the replica follows.
        this.records.updateDisk(this.record.id, vm.name, disk.id, { finalSeq, replication: replica.status().replication, finalBytes: bytes });
      }),
    );
  }

  private async apply(): Promise<void> {
    this.transition('applying', 'applying the final deltas to the replicas');
    const finals = this.diskRecords();
    await Promise.all(this.disks().map(({ vm, disk }) => this.portsOf(vm, disk).replica.applyUntil(finals.get(key(vm, disk))!.finalSeq!, { signal: this.options.signal })));
  }

  private async verify(): Promise<void> {
    const { verify } = this.plan.schedule;
    this.transition('verifying', verify === 'full' ? 'comparing SHA-256 of every source disk and replica' : 'every delta verified; replay reached every final seq');
    await Promise.all(
      this.disks().map(async ({ vm, disk }) => {
        const { source, replica } = this.portsOf(vm, disk);
        const digest = verify === 'full' ? await verifyWhole(source, replica, this.options.signal) : undefined;
        this.records.updateDisk(this.record.id, vm.name, disk.id, { verified: verify, ...(digest ? { sha256: digest.sha256 } : {}) });
      }),
    );
  }

  /** Before the commit: resume the disks, then the VMs; nothing starts at the destination. */
  private async rollBack(err: unknown): Promise<void> {
    const error = err instanceof Cancelled ? new FerryError('aborted', 'cancelled by the operator') : asFerryError(err);
    const problems: string[] = [];
    for (const { vm, disk } of this.disks()) {
      try {
        const ports = this.ports.get(key(vm, disk)) ?? (await this.openDisk(vm, disk));
        await ports.source.resumeOwnedBy(this.ownerPrefix);
      } catch (resumeErr) {
        problems.push(`disk ${vm.name}/${disk.id}: ${asFerryError(resumeErr).message}`);
      }
    }
    const paused = this.records.vms(this.record.id).filter((r) => r.progress === 'paused').map((r) => r.vm);
    for (const vm of this.plan.vms.filter((v) => paused.includes(v.name))) {
      try {
        const driver = this.options.wiring.driver(vm, 'source');
        if ((await driver.status()).state === 'paused') await driver.resume();
        this.records.updateVm(this.record.id, vm.name, { progress: 'at source' });
      } catch (resumeErr) {
        problems.push(`VM ${vm.name}: ${asFerryError(resumeErr).message}`);
      }
    }
    if (problems.length > 0) {
      this.transition('failed', `rolling back: ${error.message}; and resuming failed (the sources may still be paused): ${problems.join('; ')}`, error.message);
    } else {
      this.transition('rolled back', `${error.message}; the sources were resumed`, error.message);
    }
  }

  /** After the commit: fence, stop the sources, mark the replications, start the destinations. */
  private async rollForward(): Promise<void> {
    try {
      for (const { vm, disk } of this.disks()) await this.fenceDisk(vm, disk);
      for (const vm of this.plan.vms) {
        await this.options.wiring.driver(vm, 'source').stop(this.options.signal);
        this.records.updateVm(this.record.id, vm.name, { progress: 'source stopped' });
      }
    } catch (err) {
      if (this.interrupted) throw err; // still committed: 'resume' rolls forward
      // Destinations must not start beside a source that may still run.
      this.transition('failed', `after the commit, the sources could not all be fenced and stopped; no destination was started: ${asFerryError(err).message}`, asFerryError(err).message);
      return;
    }
    await this.closePorts();
    await this.startDestinations();
  }

  private async fenceDisk(vm: VmPlan, disk: DiskPlan): Promise<void> {
    const record = this.diskRecords().get(key(vm, disk))!;
    const ports = this.ports.get(key(vm, disk)) ?? (await this.openDisk(vm, disk));
    const finalSeq = record.finalSeq!;
    if (!record.fenced) {
      const status = await ports.source.status(this.options.signal);
      if (status.fence) {
        if (status.fence.finalSeq !== finalSeq || status.fence.replication !== record.replication) {
          throw new FerryError('conflict', `disk ${vm.name}/${disk.id} is fenced by another cutover (seq ${status.fence.finalSeq})`);
        }
      } else {
        let seq = finalSeq;
        if (status.quiesceOwner !== this.owner) {
          // A run that picks up after a crash takes the disk over from the dead run's quiesce
          // (its source VM is paused meanwhile) and drains again: nothing may have been
          // written since the commit.
          await ports.source.resumeOwnedBy(this.ownerPrefix, this.options.signal);
          await ports.source.quiesce();
          ({ finalSeq: seq } = await ports.source.drainFinal(this.options.signal));
        }
        if (seq !== finalSeq) {
          throw new FerryError('conflict', `disk ${vm.name}/${disk.id} was written after the commit (seq ${seq}, committed at ${finalSeq}): someone resumed its source`);
        }
        await ports.source.fence(finalSeq, this.options.signal);
      }
      this.records.updateDisk(this.record.id, vm.name, disk.id, { fenced: true });
    }
    if (ports.replica.status().cutOverAtSeq === undefined) await ports.replica.commitCutover(finalSeq, record.verified ?? 'deltas', this.options.signal);
  }

  private async startDestinations(): Promise<void> {
    this.transition('starting', `starting ${this.plan.runbook.boot.map((s) => s.vms.join(' + ')).join(', then ')}`);
    const failures: string[] = [];
    for (const [i, step] of this.plan.runbook.boot.entries()) {
      const results = await Promise.allSettled(step.vms.map((name) => this.startVm(this.plan.vms.find((vm) => vm.name === name)!)));
      const failed = results.flatMap((r, j) => (r.status === 'rejected' ? [`${step.vms[j]}: ${asFerryError(r.reason).message}`] : []));
      if (this.interrupted) throw new FerryError('aborted', `interrupted while starting the destinations (still committed: 'ferry cutover resume ${this.record.id}' carries on)`);
      failures.push(...failed);
      if (failed.length > 0 && this.plan.runbook.onFailure === 'stop') break;
      if (step.delayMs > 0 && i < this.plan.runbook.boot.length - 1) await this.sleep(step.delayMs);
    }
    if (failures.length > 0) {
      this.transition('failed', `the destination did not come up as the runbook says (the sources stay fenced): ${failures.join('; ')}`, failures.join('; '));
      return;
    }
    this.transition('running', 'every destination VM runs');
    this.transition('healthy', 'every destination VM passed its health checks');
  }

  /** Starts one destination VM unless it already runs there, then waits for its health checks. */
  private async startVm(vm: VmPlan): Promise<void> {
    const driver = this.options.wiring.driver(vm, 'destination');
    const record = this.records.vms(this.record.id).find((r) => r.vm === vm.name)!;
    try {
      if (record.progress !== 'healthy') {
        const status = record.startRequested ? await driver.status(this.options.signal) : undefined;
        if (status?.state !== 'running' && status?.state !== 'paused') {
          // Persisted before the hypervisor is asked: a restarted run looks before it asks again.
          this.records.updateVm(this.record.id, vm.name, { progress: 'starting', startRequested: true });
          await driver.start(this.options.signal);
        }
        if (record.runningAtMs === undefined) this.records.updateVm(this.record.id, vm.name, { progress: 'running', runningAtMs: Date.now() });
        await driver.health(vm.health, this.options.signal);
        this.records.updateVm(this.record.id, vm.name, { progress: 'healthy', healthyAtMs: Date.now() });
      }
    } catch (err) {
      this.records.updateVm(this.record.id, vm.name, { progress: 'failed', error: asFerryError(err).message });
      throw err;
    }
  }

  /** Every run of this cutover names its quiesces with this prefix. */
  private get ownerPrefix(): string {
    return `ferry cutover ${this.record.id} `;
  }

  private async openDisk(vm: VmPlan, disk: DiskPlan): Promise<CutoverDiskPorts> {
    const ports = await this.options.wiring.openDisk(vm, disk, this.owner, this.options.signal);
    this.ports.set(key(vm, disk), ports);
    return ports;
  }

  private async closePorts(): Promise<void> {
    const all = [...this.ports.values()];
    this.ports.clear();
    await Promise.allSettled(all.map((p) => p.replica.close()));
  }

  private disks(): PlanDisk[] {
    return this.plan.vms.flatMap((vm) => vm.disks.map((disk) => ({ vm, disk })));
  }

  private portsOf(vm: VmPlan, disk: DiskPlan): CutoverDiskPorts {
    const ports = this.ports.get(key(vm, disk));
    if (!ports) throw new FerryError('internal', `disk ${vm.name}/${disk.id} is not open`);
    return ports;
  }

  private diskRecords(): Map<string, DiskRecord> {
    return new Map(this.records.disks(this.record.id).map((d) => [`${d.vm}\0${d.disk}`, d]));
  }

  private transition(state: CutoverState, message: string, error?: string): void {
    this.records.transition(this.record.id, state, message, error);
    this.record = this.records.get(this.record.id);
    this.options.onTransition?.(this.record);
  }

  /** Stopped by the caller (Ctrl-C, SIGTERM): the cutover stays where it was, for 'resume'. */
  private get interrupted(): boolean {
    return this.options.signal?.aborted === true;
  }

  private checkCancel(): void {
    if (this.records.get(this.record.id).cancel) throw new Cancelled();
  }

  private async sleep(ms: number): Promise<void> {
    await sleep(ms, undefined, { signal: this.options.signal }).catch((err: unknown) => {
      throw new FerryError('aborted', 'interrupted', { cause: err });
    });
  }
}

function key(vm: VmPlan, disk: DiskPlan): string {
  return `${vm.name}\0${disk.id}`;
}

/** The report of a cutover, from what the database holds. */
export function report(records: CutoverRecords, id: string): CutoverReport {
  const record = records.get(id);
  const disks = records.disks(id);
  const vms: VmReport[] = records.vms(id).map((v) => {
    const own = disks.filter((d) => d.vm === v.vm);
    return {
      vm: v.vm,
      progress: v.progress,
      ...(v.pausedAtMs !== undefined && v.runningAtMs !== undefined ? { downtimeToRunningMs: v.runningAtMs - v.pausedAtMs } : {}),
      ...(v.pausedAtMs !== undefined && v.healthyAtMs !== undefined ? { downtimeToHealthyMs: v.healthyAtMs - v.pausedAtMs } : {}),
      finalBytes: own.reduce((n, d) => n + (d.finalBytes ?? 0), 0),
      disks: own.map((d) => ({ disk: d.disk, finalSeq: d.finalSeq, verified: d.verified, sha256: d.sha256, fenced: d.fenced, finalBytes: d.finalBytes })),
      ...(v.error ? { error: v.error } : {}),
    };
  });
  const max = (values: Array<number | undefined>) => (values.every((x) => x !== undefined) && values.length > 0 ? Math.max(...(values as number[])) : undefined);
  return {
    id,
    plan: record.plan.name,
    state: record.state,
    ...(record.error ? { error: record.error } : {}),
    vms,
    maxDowntimeToRunningMs: max(vms.map((v) => v.downtimeToRunningMs)),
    maxDowntimeToHealthyMs: max(vms.map((v) => v.downtimeToHealthyMs)),
    finalBytes: vms.reduce((n, v) => n + v.finalBytes, 0),
  };
}

