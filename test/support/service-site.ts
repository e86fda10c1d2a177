/**
 * A migration site for the service's end-to-end tests: two `ferry agent`s over TLS on
 * loopback (a source host serving a running test guest's disks, a destination host with
 * none, each with its own state directory) and `ferry serve` with an API token. A harness
 * keeps what it started, to stop it after each test.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdir, readFile, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { expect } from 'vitest';
import { QemuVm } from '../../src/cutover/index.js';
import { sha256File } from './images.js';
import { freePort, serviceToken, startAgent, startService, wizardClient, type AgentProcess, type ServiceProcess } from './service.js';
import { guestAppend, guestVerifyReports, type TestGuest } from './test-guest.js';

const MiB = 1024 * 1024;
export const guestBlocks = 64;

/** The guest's disk names in order: vda, vdb, ... */
export const guestDisks = (disks: string[]) => disks.map((_, i) => `vd${String.fromCharCode(97 + i)}`);

/** What QEMU says of the VM in `runDir`: 'running', 'paused', or 'absent'. */
export async function vmState(runDir: string): Promise<string> {
  const vm = await QemuVm.attach({ runDir, timeoutMs: 5000 }).catch(() => undefined);
  if (!vm) return 'absent';
  try {
    return (await vm.status()).running ? 'running' : 'paused';
  } finally {
    await vm.disconnect();
  }
}

export interface Site {
  name: string;
  base: string;
  store: string;
  images: Map<string, string>;
  source: AgentProcess;
  destination: AgentProcess;
  sourceRun: string;
  destinationRun: string;
  db: string;
  service: ServiceProcess;
  token: string;
  call: ReturnType<typeof wizardClient>;
}

export class SiteHarness {
  private readonly children: ChildProcess[] = [];
  private readonly vms: string[] = []; // run directories of every VM started, source or destination

  constructor(
    private readonly dir: string,
    readonly guest: TestGuest,
  ) {}

  /** Stops every VM and process started since the last stop. */
  async stop(): Promise<void> {
    for (const runDir of this.vms.splice(0)) await (await QemuVm.attach({ runDir, timeoutMs: 2000 }).catch(() => undefined))?.kill();
    for (const child of this.children.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }

  /** Two agents over TLS, a guest writing through the source agent, and the service. */
  async site(name: string, disks: string[]): Promise<Site> {
    const { children } = this;
    const base = join(this.dir, name);
    const store = `file:${join(base, 'store')}`;
    await mkdir(join(base, 'src'), { recursive: true });
    await mkdir(join(base, 'dst'), { recursive: true });
    const images = new Map(disks.map((d) => [d, join(base, `${d}.img`)]));
    for (const image of images.values()) {
      await writeFile(image, '');
      await truncate(image, 8 * MiB);
    }
    // Its inventory: one VM, "db", with every disk.
    const source = await startAgent({ name: `${name}-src`, stateDir: join(base, 'src', 'state'), disks: Object.fromEntries(images), store, args: ['--vm', `db=${disks.join(',')}`] });
    children.push(source.child);
    // The destination agent keeps its address across restarts: the service knows it by it.
    const destination = await startAgent({ name: `${name}-dst`, stateDir: join(base, 'dst', 'state'), port: await freePort() });
    children.push(destination.child);

    const sourceRun = join(base, 'run-src');
    const destinationRun = join(base, 'run-dst');
    await this.guestOn(sourceRun, disks.map((d) => source.sockets.get(d)!), disks);
    this.track(destinationRun);

    const db = join(base, 'service', 'ferry.db');
    const token = await serviceToken(db);
    const service = await startService({ db });
    children.push(service.child);
    const s: Site = { name, base, store, images, source, destination, sourceRun, destinationRun, db, service, token, call: wizardClient(() => s.service.url, token) };
    return s;
  }

  /**
   * How the two hosts run the guest, as a migration's VM gives it: the destination boots
   * from the replicas and checks the data the source wrote ("verify done": healthy).
   */
  sides(s: Pick<Site, 'sourceRun' | 'destinationRun'>, disks: string[]) {
    return {
      source: { driver: 'qemu', qmp: join(s.sourceRun, 'qmp.sock') },
      destination: {
        driver: 'qemu',
        runDir: s.destinationRun,
        launch: { kernel: this.guest.kernelPath, initrd: this.guest.initrdPath, append: guestAppend({ blocks: guestBlocks, disks: guestDisks(disks), sleepSeconds: 0.05, verify: true }) },
      },
      health: { console: 'FERRY-GUEST: verify done', timeout: '60s' },
    };
  }

  /** A VM that may run in `runDir` (a destination): stopped with the rest. */
  track(runDir: string): void {
    this.vms.push(runDir);
  }

  /**
   * Boots the test guest in `runDir` on the NBD sockets (export names `disks`) and resolves
   * once it wrote its second generation; its QMP monitor is left for the cutover.
   */
  async guestOn(runDir: string, sockets: string[], disks: string[]): Promise<void> {
    await mkdir(runDir, { recursive: true });
    const vm = new QemuVm({
      runDir,
      detached: true,
      kernelPath: this.guest.kernelPath,
      initrdPath: this.guest.initrdPath,
      append: guestAppend({ blocks: guestBlocks, disks: guestDisks(disks), sleepSeconds: 0.05 }),
      disks: disks.map((d, i) => ({ socketPath: sockets[i]!, exportName: d })),
    });
    this.vms.push(runDir);
    await vm.start();
    await vm.waitForConsole(/FERRY-GUEST: wrote gen 2\b/, 60_000);
    await vm.disconnect();
  }

  /** SIGKILLs the service (if it still runs) and starts it again on its database, with `env`. */
  async restartService(s: Site, env: NodeJS.ProcessEnv = {}): Promise<void> {
    s.service.child.kill('SIGKILL');
    await s.service.done;
    s.service = await startService({ db: s.db, env });
    this.children.push(s.service.child);
  }

  /** Stops the destination agent and starts it again, at the same address. */
  async restartDestination(s: Site): Promise<void> {
    await s.destination.stop();
    s.destination = await startAgent({ name: `${s.name}-dst`, stateDir: join(s.base, 'dst', 'state'), port: Number(new URL(s.destination.url).port) });
    this.children.push(s.destination.child);
  }
}

/** The end state every migration must reach: replicas equal to the stopped sources when paused, one copy of the VM running, its data checked. */
export async function expectMoved(s: Pick<Site, 'call' | 'images' | 'sourceRun' | 'destinationRun'>, id: string, disks: string[]): Promise<void> {
  const progress = (await s.call<{ cutover: { state: string; vms: Array<{ disks: Array<{ disk: string; verified: string; sha256: string }> }> } }>('GET', `/v1/migrations/${id}/progress`)).body;
  expect(progress.cutover.state).toBe('healthy');
  // The destination guest writes on from the data it checked, so the replicas are compared
  // as the full verify saw them, paused: the same bytes as the source disks, which stopped there.
  for (const disk of disks) {
    const source = await sha256File(s.images.get(disk)!);
    expect(progress.cutover.vms[0]!.disks.find((d) => d.disk === disk), disk).toMatchObject({ verified: 'full', sha256: source });
  }
  expect(await vmState(s.sourceRun)).toBe('absent');
  expect(await vmState(s.destinationRun)).toBe('running');
  const reports = guestVerifyReports(await readFile(join(s.destinationRun, 'console.log'), 'utf8'));
  expect(reports.map((r) => [r.disk, r.ok])).toEqual(disks.map((_, i) => [`vd${String.fromCharCode(97 + i)}`, true]));
}
