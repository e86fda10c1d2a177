/**
 * The cutover coordinator's ports over a control API: a source disk of a `ferry filter` or
 * `ferry agent`, and, for the migration service, a replica an agent follows and a VM of an
 * agent's host. `AgentControl` is what they need of the API; api's FilterControlClient is
 * one (over a unix socket or TLS).
 */
import { FerryError, type DiskDigest } from '../core/index.js';
import type {
  BackpressureLevel,
  CoordinatedReplica,
  CoordinatedSource,
  CutoverSource,
  HealthCheck,
  ReplicaStatus as CutoverReplicaStatus,
  SideSpec,
  VmDriver,
  VmPlan,
  VmStatus,
} from '../cutover/index.js';
import type { BaseCopyStatus, FilterDiskStatus, SeedExportStatus } from './filter-service.js';
import type { SeedImportStatus } from './seed-import-job.js';
import type { ReplicaStatus } from './replica-service.js';
import type { HostInventory } from './service/records.js';

interface Call {
  signal?: AbortSignal;
  timeoutMs?: number;
}

type VmAction = 'status' | 'check' | 'start' | 'pause' | 'resume' | 'stop' | 'health';

/** The control API's operations the coordinator and the migration service use. */
export interface AgentControl {
  readonly address: string;
  disk(id: string, options?: Call): Promise<FilterDiskStatus>;
  inventory(options?: Call): Promise<HostInventory>;
  resume(id: string, by: { owner: string } | { force: true }, options?: Call): Promise<void>;
  setBackpressure(id: string, changes: { highWaterBytes?: number; maxDelayMs?: number }, options?: Call): Promise<unknown>;
  cutoverSource(id: string, owner: string, leaseMs?: number): CutoverSource;
  startBaseCopy(id: string, body?: { concurrency?: number }, options?: Call): Promise<BaseCopyStatus>;
  baseCopy(id: string, options?: Call): Promise<BaseCopyStatus>;
  setRate(rate: string | number, options?: Call): Promise<number>;
  startSeedExport(body: { device: string; disks?: string[]; volumeSizeBytes?: number }, options?: Call): Promise<SeedExportStatus>;
  seedExport(options?: Call): Promise<SeedExportStatus>;
  startSeedImport(body: { device: string; store: string }, options?: Call): Promise<SeedImportStatus>;
  seedImport(options?: Call): Promise<SeedImportStatus>;
  setMode(id: string, mode: 'streaming' | 'bitmap', reason?: string, options?: Call): Promise<unknown>;
  addReplica(body: { id: string; disk: string; store: string; manifest: string; path?: string }, options?: Call): Promise<ReplicaStatus>;
  replica(id: string, options?: Call): Promise<ReplicaStatus>;
  removeReplica(id: string, options?: Call): Promise<ReplicaStatus>;
  holdReplica(id: string, owner: string, leaseMs?: number, options?: Call): Promise<ReplicaStatus>;
  applyReplica(id: string, owner: string, untilSeq?: number, options?: Call): Promise<ReplicaStatus>;
  hashReplica(id: string, owner: string, options?: Call): Promise<DiskDigest>;
  commitReplica(id: string, owner: string, finalSeq: number, verified: 'full' | 'deltas', options?: Call): Promise<ReplicaStatus>;
  releaseReplica(id: string, owner: string, options?: Call): Promise<ReplicaStatus>;
  vm(name: string, action: VmAction, body: { side: 'source' | 'destination'; spec: SideSpec; disks?: string[]; health?: HealthCheck }, options?: Call): Promise<VmStatus | { ok: true }>;
}

/** A source disk as the coordinator drives it: `owner` quiesces it, for `leaseMs` renewed. */
export function sourceDiskPort(control: AgentControl, diskId: string, owner: string, leaseMs: number): CoordinatedSource {
  const port = control.cutoverSource(diskId, owner, leaseMs);
  const status = async (signal?: AbortSignal) => {
    const s = await control.disk(diskId, { signal });
    return {
      replication: s.tracker.replication,
      mode: s.tracker.mode,
      consistent: s.tracker.consistent,
      currentSeq: s.tracker.currentSeq,
      lagSeconds: s.figures.lagSeconds,
      // JSON carries an unknown prediction (no drain measured yet) as null.
      predictedPauseMs: s.figures.predictedPauseMs ?? Infinity,
      ...(s.quiesce ? { quiesceOwner: s.quiesce.owner } : {}),
      ...(s.fence ? { fence: { replication: s.fence.replication, finalSeq: s.fence.finalSeq } } : {}),
      backpressure: { highWaterBytes: s.backpressure.highWaterBytes, maxDelayMs: s.backpressure.maxDelayMs },
    };
  };
  return {
    ...port,
    status,
    async resumeOwnedBy(ownerPrefix, signal) {
      const held = (await status(signal)).quiesceOwner;
      if (held === owner) await port.resume();
      else if (held?.startsWith(ownerPrefix)) await control.resume(diskId, { force: true }, { signal });
    },
    async setBackpressure(level: BackpressureLevel, signal) {
      await control.setBackpressure(diskId, level, { signal });
    },
  };
}

/**
 * A replica an agent follows, held by `owner` for the cutover (the agent's follower waits
 * meanwhile). The hold's lease is renewed by every call and by a timer while it is held.
 */
export async function heldReplicaPort(control: AgentControl, replicaId: string, owner: string, options: { leaseMs?: number; signal?: AbortSignal } = {}): Promise<CoordinatedReplica> {
  const leaseMs = options.leaseMs ?? 60_000;
  let last = await control.holdReplica(replicaId, owner, leaseMs, { signal: options.signal });
  const renewing = setInterval(() => {
    control.holdReplica(replicaId, owner, leaseMs, { timeoutMs: leaseMs / 3 }).catch(() => {}); // a missed renewal is tried again next time
  }, leaseMs / 3);
  renewing.unref();
  const seen = (s: ReplicaStatus) => (last = s);
  return {
    async applyUntil(seq, o) {
      seen(await control.applyReplica(replicaId, owner, seq, { signal: o?.signal }));
    },
    async commitCutover(finalSeq, verified, signal) {
      seen(await control.commitReplica(replicaId, owner, finalSeq, verified, { signal }));
    },
    hash: (signal) => control.hashReplica(replicaId, owner, { signal }),
    async catchUp(signal) {
      seen(await control.applyReplica(replicaId, owner, undefined, { signal }));
    },
    status(): CutoverReplicaStatus {
      if (last.replication === undefined || last.nextSeq === undefined) {
        throw new FerryError('invalid-state', `replica ${replicaId} at ${control.address} has no replay state yet (${last.state})`);
      }
      return { replication: last.replication, nextSeq: last.nextSeq, consistent: last.consistent === true, ...(last.cutoverFinalSeq !== undefined ? { cutOverAtSeq: last.cutoverFinalSeq } : {}) };
    },
    async close() {
      clearInterval(renewing);
      await control.releaseReplica(replicaId, owner);
    },
  };
}

/** A VM of an agent's host, driven through the agent: `disks` are its replicas' paths there. */
export class AgentVmDriver implements VmDriver {
  readonly description: string;

  constructor(
    private readonly control: AgentControl,
    private readonly vm: VmPlan,
    private readonly side: 'source' | 'destination',
  ) {
    this.description = `${vm[side].driver} ${vm.name} (${side}, agent ${control.address})`;
  }

  async status(signal?: AbortSignal): Promise<VmStatus> {
    return (await this.call('status', signal)) as VmStatus;
  }

  async check(signal?: AbortSignal): Promise<void> {
    await this.call('check', signal);
  }

  async start(signal?: AbortSignal): Promise<void> {
    await this.call('start', signal);
  }

  async pause(signal?: AbortSignal): Promise<void> {
    await this.call('pause', signal);
  }

  async resume(signal?: AbortSignal): Promise<void> {
    await this.call('resume', signal);
  }

  async stop(signal?: AbortSignal): Promise<void> {
    await this.call('stop', signal);
  }

  async health(check: HealthCheck, signal?: AbortSignal): Promise<void> {
    await this.call('health', signal, check);
  }

  private call(action: VmAction, signal?: AbortSignal, health?: HealthCheck): Promise<VmStatus | { ok: true }> {
    const body = { side: this.side, spec: this.vm[this.side], disks: this.vm.disks.map((d) => d.replica), ...(health ? { health } : {}) };
    return this.control.vm(this.vm.name, action, body, { signal });
  }
}
