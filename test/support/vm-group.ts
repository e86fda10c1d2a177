/**
 * A group of test guests under live replication, ready for `ferry cutover --plan`: one
 * `ferry filter` serving every disk, each source VM running the test guest over NBD and
 * writing continuously, a base copy and a replica per disk with `replica apply --follow`
 * keeping it warm, and a plan whose destination VMs boot the guest from the replicas with
 * `ferry.verify=1` (healthy once the guest has checked the data it wrote at the source).
 */
import type { ChildProcess } from 'node:child_process';
import { mkdir, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { expect } from 'vitest';
import { QemuVm } from '../../src/cutover/index.js';
import { ferry, startFollower, type CliResult } from './cli.js';
import { startFilterProcess, type FilterProcess } from './filter-process.js';
import { guestAppend, testGuest, type TestGuest } from './test-guest.js';

export interface GroupVm {
  name: string;
  disks: string[];
}

export interface VmGroup {
  dir: string;
  store: string;
  filter: FilterProcess;
  guest: TestGuest;
  /** The source VMs, by name (their QMP monitors free for ferry). */
  sources: Map<string, QemuVm>;
  /** Source disk images and replicas, by disk id. */
  images: Map<string, string>;
  replicas: Map<string, string>;
  followers: Array<{ child: ChildProcess; done: Promise<CliResult> }>;
  planPath: string;
  dbPath: string;
  /** The destination VMs' run directories, by name. */
  destinations: Map<string, string>;
  /** Stops everything still running (source and destination VMs, followers, the filter). */
  stop(): Promise<void>;
}

const guestBlocks = 64;
const diskBytes = 8 * 1024 * 1024;

/** Writes the plan for `vms`; `schedule` and per-VM overrides go in as given. */
export async function startVmGroup(options: {
  dir: string;
  vms: GroupVm[];
  schedule?: Record<string, unknown>;
  runbook?: Record<string, unknown>;
  destination?: (vm: GroupVm) => Record<string, unknown>;
}): Promise<VmGroup> {
  const { dir } = options;
  await mkdir(dir, { recursive: true });
  const guest = await testGuest();
  const store = `file:${join(dir, 'store')}`;
  const images = new Map<string, string>();
  const replicas = new Map<string, string>();
  for (const vm of options.vms) {
    for (const disk of vm.disks) {
      const image = join(dir, `${disk}.img`);
      await writeFile(image, '');
      await truncate(image, diskBytes);
      images.set(disk, image);
      replicas.set(disk, join(dir, `${disk}.replica.img`));
    }
  }
  const filter = await startFilterProcess({ disks: Object.fromEntries(images), stateDir: join(dir, 'state'), store, args: ['--chunk-size', '1M'] });
  const sources = new Map<string, QemuVm>();
  const followers: VmGroup['followers'] = [];
  const destinations = new Map<string, string>();
  const group: VmGroup = {
    dir,
    store,
    filter,
    guest,
    sources,
    images,
    replicas,
    followers,
    planPath: join(dir, 'plan.json'),
    dbPath: join(dir, 'ferry.db'),
    destinations,
    async stop() {
      for (const runDir of destinations.values()) {
        const vm = await QemuVm.attach({ runDir, timeoutMs: 5000 }).catch(() => undefined);
        await vm?.kill();
      }
      for (const vm of sources.values()) await vm.kill().catch(() => undefined);
      for (const f of followers) if (f.child.exitCode === null && f.child.signalCode === null) f.child.kill('SIGKILL');
      if (filter.child.exitCode === null) await filter.stop();
    },
  };
  try {
    for (const vm of options.vms) {
      const runDir = join(dir, 'run', `${vm.name}-src`);
      await mkdir(runDir, { recursive: true });
      const source = new QemuVm({
        runDir,
        detached: true,
        kernelPath: guest.kernelPath,
        initrdPath: guest.initrdPath,
        append: guestAppend({ blocks: guestBlocks, disks: vm.disks.map((_, i) => `vd${String.fromCharCode(97 + i)}`), sleepSeconds: 0.05 }),
        disks: vm.disks.map((disk) => ({ socketPath: filter.sockets.get(disk)!, exportName: disk })),
      });
      await source.start();
      sources.set(vm.name, source);
      await source.waitForConsole(/FERRY-GUEST: wrote gen 2\b/, 60_000);
      await source.disconnect(); // its QMP monitor is ferry's now
    }
    for (const vm of options.vms) {
      for (const disk of vm.disks) {
        const copy = await ferry(['base-copy', '--control', filter.control, '--disk', disk, '-q']);
        expect(copy.code, copy.stderr).toBe(0);
        const init = await ferry(['replica', 'init', '--store', store, '--disk', disk, '--manifest', copy.stdout.trim(), replicas.get(disk)!, '-q']);
        expect(init.code, init.stderr).toBe(0);
        followers.push(await startFollower(store, replicas.get(disk)!));
      }
    }
    const plan = {
      version: 1,
      name: 'group',
      store,
      vms: options.vms.map((vm) => {
        const runDir = join(dir, 'run', `${vm.name}-dst`);
        destinations.set(vm.name, runDir);
        return {
          name: vm.name,
          disks: vm.disks.map((disk) => ({ id: disk, control: filter.control, replica: replicas.get(disk)! })),
          source: { driver: 'qemu', qmp: join(dir, 'run', `${vm.name}-src`, 'qmp.sock') },
          destination: options.destination?.(vm) ?? {
            driver: 'qemu',
            runDir,
            launch: {
              kernel: guest.kernelPath,
              initrd: guest.initrdPath,
              append: guestAppend({ blocks: guestBlocks, disks: vm.disks.map((_, i) => `vd${String.fromCharCode(97 + i)}`), sleepSeconds: 0.05, verify: true }),
            },
          },
          health: { console: 'FERRY-GUEST: verify done', timeout: '60s' },
        };
      }),
      ...(options.runbook ? { runbook: options.runbook } : {}),
      schedule: { budget: '10s', maxLagSeconds: 30, window: '2m', ...options.schedule },
    };
    await writeFile(group.planPath, JSON.stringify(plan, null, 2));
    return group;
  } catch (err) {
    await group.stop();
    throw err;
  }
}
