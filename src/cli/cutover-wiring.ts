/**
 * The coordinator's ports wired to the real parts: each disk's `ferry filter` over its
 * control socket (the source), its replica's applier (taken over from a follower, which
 * takes it back afterwards), and each VM's hypervisor driver.
 */
import { FilterControlClient } from '../api/index.js';
import { FerryError, type Logger } from '../core/index.js';
import { createVmDriver, type CutoverDiskPorts, type CutoverWiring, type DiskPlan, type VmDriver, type VmPlan } from '../cutover/index.js';
import { ReplicaApplier } from '../delta/index.js';
import { sourceDiskPort } from '../migrate/index.js';
import { Repository, openStore } from '../store/index.js';

export function cutoverWiring(options: { leaseMs: number; logger: Logger; env: NodeJS.ProcessEnv }): CutoverWiring {
  const drivers = new Map<string, VmDriver>();
  return {
    openDisk: (vm, disk, owner, signal) => openDisk(vm, disk, owner, options.leaseMs, signal),
    driver(vm: VmPlan, side: 'source' | 'destination'): VmDriver {
      const key = `${vm.name}\0${side}`;
      let driver = drivers.get(key);
      if (!driver) {
        driver = createVmDriver(vm, side, options.logger, { env: options.env });
        drivers.set(key, driver);
      }
      return driver;
    },
  };
}

async function openDisk(vm: VmPlan, disk: DiskPlan, owner: string, leaseMs: number, signal?: AbortSignal): Promise<CutoverDiskPorts> {
  const name = `${vm.name}/${disk.id}`;
  const store = openStore(disk.store);
  let applier: ReplicaApplier;
  try {
    const repo = await Repository.open(store);
    applier = await ReplicaApplier.open(repo, disk.replica, { lock: { purpose: `ferry cutover (${owner})`, takeOver: true, signal } });
  } catch (err) {
    await store.close();
    throw err;
  }
  return {
    source: sourceDiskPort(new FilterControlClient(disk.control), disk.id, owner, leaseMs),
    replica: {
      applyUntil: (seq, o) => applier.applyUntil(seq, o),
      commitCutover: (finalSeq, verified, sig) => applier.commitCutover(finalSeq, verified, sig),
      hash: (sig) => applier.hash(sig),
      async catchUp(sig) {
        await applier.applyAvailable(sig);
      },
      status() {
        const s = applier.snapshot();
        if (s.diskId !== disk.id) throw new FerryError('bad-input', `${name}: replica ${disk.replica} is of disk ${JSON.stringify(s.diskId)}`);
        return { replication: s.replication, nextSeq: s.nextSeq, consistent: applier.consistent, ...(s.cutover ? { cutOverAtSeq: s.cutover.finalSeq } : {}) };
      },
      async close() {
        await applier.close();
        await store.close();
      },
    },
  };
}
