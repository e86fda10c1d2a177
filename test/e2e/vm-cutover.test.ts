/**
 * The cutover of whole VMs by plan, end to end with QEMU: two test guests (one with two
 * disks) write continuously through `ferry filter`, followers keep the replicas warm, and
 * `ferry cutover --plan` pauses them, drains, applies, verifies and commits, then starts
 * the destination guests from the replicas in runbook order; each checks the data it wrote
 * at the source before it writes on.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { FilterControlClient } from '../../src/api/index.js';
import { openDatabase } from '../../src/core/index.js';
import { CutoverRecords, QemuVm, type CutoverReport } from '../../src/cutover/index.js';
import { ferry, startFerry } from '../support/cli.js';
import { sha256File } from '../support/images.js';
import { guestVerifyReports } from '../support/test-guest.js';
import { tempDir } from '../support/temp.js';
import { startVmGroup, type VmGroup } from '../support/vm-group.js';

let dir: { path: string; cleanup: () => Promise<void> };
const groups: VmGroup[] = [];

beforeAll(async () => {
  dir = await tempDir('ferry-vm-cutover-');
});
// Each test's VMs stop with it: guests left running would slow every test after them.
afterEach(async () => {
  for (const group of groups.splice(0)) await group.stop();
});
afterAll(async () => {
  await dir.cleanup();
});

async function group(name: string, options: Omit<Parameters<typeof startVmGroup>[0], 'dir'>): Promise<VmGroup> {
  const g = await startVmGroup({ dir: join(dir.path, name), ...options });
  groups.push(g);
  return g;
}

/** What QEMU says of a VM: 'running', 'paused', or 'absent' when none runs there. */
async function vmState(where: { runDir: string } | { qmpSocketPath: string }): Promise<string> {
  let vm: QemuVm;
  try {
    vm = await QemuVm.attach({ ...where, timeoutMs: 5000 });
  } catch {
    return 'absent';
  }
  try {
    return (await vm.status()).running ? 'running' : 'paused';
  } finally {
    await vm.disconnect();
  }
}

it('a group of two guests (three disks) cuts over by plan: replicas equal the paused sources, destinations start in order and verify their data', async () => {
  const g = await group('pair', {
    vms: [
      { name: 'db', disks: ['db0', 'db1'] },
      { name: 'app', disks: ['app0'] },
    ],
    runbook: { boot: [{ vms: ['db'], delay: '500ms' }, { vms: ['app'] }] },
    schedule: { verify: 'full' },
  });
  // The coordinator dies right after the commit point: the replicas then hold what the
  // paused sources held, before any destination writes to them.
  const first = await ferry(['cutover', '--plan', g.planPath, '--db', g.dbPath, '--json'], { FERRY_FAILPOINT: 'cutover:committed' });
  expect(first.signal, first.stderr).toBe('SIGKILL');
  const id = /^cutover (\S+) of plan group$/m.exec(first.stderr)?.[1];
  expect(id, first.stderr).toBeTruthy();
  for (const [disk, image] of g.images) expect(await sha256File(g.replicas.get(disk)!), disk).toBe(await sha256File(image));
  for (const vm of ['db', 'app']) expect(await vmState({ runDir: g.destinations.get(vm)! })).toBe('absent');

  const resumed = await ferry(['cutover', 'resume', id!, '--db', g.dbPath, '--json']);
  expect(resumed.code, resumed.stderr).toBe(0);
  const report = JSON.parse(resumed.stdout) as CutoverReport;
  expect(report.state).toBe('healthy');
  expect(report.vms.map((v) => [v.vm, v.progress, v.disks.map((d) => [d.disk, d.verified, d.fenced])])).toEqual([
    ['db', 'healthy', [['db0', 'full', true], ['db1', 'full', true]]],
    ['app', 'healthy', [['app0', 'full', true]]],
  ]);
  for (const v of report.vms) expect(v.downtimeToHealthyMs).toBeGreaterThanOrEqual(v.downtimeToRunningMs!);
  // What the full verify saw at the pause is what the (fenced, stopped) sources still hold.
  for (const d of report.vms.flatMap((v) => v.disks)) expect(d.sha256, d.disk).toBe(await sha256File(g.images.get(d.disk)!));

  // Every state was passed, and the runbook's order held: db was healthy before app ran.
  const status = JSON.parse((await ferry(['cutover', 'status', id!, '--db', g.dbPath, '--json'])).stdout) as { events: Array<{ state: string; message: string }> };
  expect(status.events.map((e) => e.state)).toEqual(expect.arrayContaining(['planned', 'pre-checks', 'pausing', 'draining', 'applying', 'verifying', 'committed', 'starting', 'running', 'healthy']));
  const vms = new CutoverRecords(openDatabase(g.dbPath)).vms(id!);
  expect(vms.find((v) => v.vm === 'app')!.runningAtMs).toBeGreaterThanOrEqual(vms.find((v) => v.vm === 'db')!.healthyAtMs! + 500);

  // Exactly one copy of each VM runs: the sources exited, the destinations run and checked
  // the data their guests wrote at the source, every disk of them.
  for (const [name, source] of g.sources) {
    expect(await vmState({ qmpSocketPath: source.qmpSocketPath }), name).toBe('absent');
    expect(await vmState({ runDir: g.destinations.get(name)! }), name).toBe('running');
  }
  const db = guestVerifyReports(await readFile(join(g.destinations.get('db')!, 'console.log'), 'utf8'));
  const app = guestVerifyReports(await readFile(join(g.destinations.get('app')!, 'console.log'), 'utf8'));
  expect(db.map((r) => [r.disk, r.ok])).toEqual([
    ['vda', true],
    ['vdb', true],
  ]);
  expect(app.map((r) => [r.disk, r.ok])).toEqual([['vda', true]]);

  // The sources are fenced; the followers saw their replications cut over and exited.
  const client = new FilterControlClient(g.filter.control);
  for (const disk of g.images.keys()) expect((await client.disk(disk)).fence, disk).toBeDefined();
  for (const f of g.followers) expect((await f.done).code).toBe(0);
});

it('a cutover whose destination cannot start is refused before anything is paused', async () => {
  const g = await group('nostart', {
    vms: [{ name: 'solo', disks: ['s0'] }],
    destination: () => ({ driver: 'qemu', runDir: join(dir.path, 'nostart', 'run', 'solo-dst'), launch: { kernel: join(dir.path, 'no-such-kernel') } }),
  });
  const result = await ferry(['cutover', '--plan', g.planPath, '--db', g.dbPath, '--json']);
  expect(result.code).toBe(7);
  const report = JSON.parse(result.stdout) as CutoverReport;
  expect(report.state).toBe('failed');
  expect(report.error).toMatch(/its kernel .*no-such-kernel cannot be used/);
  expect(report.vms[0]!.progress).toBe('at source');
  expect(await vmState({ qmpSocketPath: g.sources.get('solo')!.qmpSocketPath })).toBe('running');
});

it('held for the go: a replica damaged meanwhile fails the full verify, and the cutover rolls back with the source running again', async () => {
  const g = await group('held', { vms: [{ name: 'solo', disks: ['h0'] }], schedule: { hold: true, verify: 'full' } });
  const { run, id } = await startHeld(g);
  // A byte of the replica goes bad where the guest never writes (past its pattern region).
  const { open } = await import('node:fs/promises');
  const replica = await open(g.replicas.get('h0')!, 'r+');
  await replica.write(Buffer.from([0xee]), 0, 1, 4 * 1024 * 1024 + 17);
  await replica.close();
  const go = await ferry(['cutover', 'go', id, '--db', g.dbPath]);
  expect(go.code, go.stderr).toBe(0);
  const result = await run.done;
  expect(result.code, result.stderr).toBe(130);
  const report = JSON.parse(result.stdout) as CutoverReport;
  expect(report.state).toBe('rolled back');
  expect(report.error).toMatch(/the replica differs from the source/);
  expect(await vmState({ qmpSocketPath: g.sources.get('solo')!.qmpSocketPath })).toBe('running');
  expect(await vmState({ runDir: g.destinations.get('solo')! })).toBe('absent');
  const disk = await new FilterControlClient(g.filter.control).disk('h0');
  expect([disk.quiesce, disk.fence]).toEqual([undefined, undefined]);
});

/** The pid of the QEMU running the destination VM, if one runs. */
async function destinationPid(g: VmGroup): Promise<number | undefined> {
  const vm = await QemuVm.attach({ runDir: g.destinations.get('solo')!, timeoutMs: 5000 }).catch(() => undefined);
  await vm?.disconnect();
  return vm?.pid;
}

/** Starts `ferry cutover --plan` on a plan with hold; resolves once it waits for the go, with its id. */
async function startHeld(g: VmGroup): Promise<{ run: ReturnType<typeof startFerry>; id: string }> {
  const run = startFerry(['cutover', '--plan', g.planPath, '--db', g.dbPath, '--json']);
  let stderr = '';
  run.child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  await waitUntil('the cutover to be held', async () => /\bheld\b/.test(stderr));
  return { run, id: /^cutover (\S+) of plan group$/m.exec(stderr)![1]! };
}

/** Starts a one-disk cutover that SIGKILLs itself right after persisting `state`; returns its id. */
async function killedAt(g: VmGroup, state: string): Promise<string> {
  const run = await ferry(['cutover', '--plan', g.planPath, '--db', g.dbPath], { FERRY_FAILPOINT: `cutover:${state}` });
  expect(run.signal, run.stderr).toBe('SIGKILL');
  return /^cutover (\S+) of plan group$/m.exec(run.stderr)![1]!;
}

async function waitUntil(what: string, condition: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

// The coordinator SIGKILLed right after it persisted each state, then run again: before the
// commit it rolls back (the source VM runs again, nothing at the destination); from the
// commit on it rolls forward (the destination runs and checked its data; the source is gone).
// Killed holding a quiesce, the disk resumes when the lease (3 s here) runs out.
for (const state of ['pre-checks', 'pausing', 'draining', 'applying', 'verifying', 'committed', 'starting', 'running']) {
  it(`a coordinator killed at ${state} and run again leaves exactly one copy of the VM running`, async () => {
    const g = await group(`kill-${state}`, { vms: [{ name: 'solo', disks: ['k0'] }], schedule: { lease: '3s' } });
    const source = g.sources.get('solo')!;
    const client = new FilterControlClient(g.filter.control);
    const id = await killedAt(g, state);
    const pidBefore = await destinationPid(g);
    expect(pidBefore === undefined).toBe(state !== 'running'); // launched only once 'running' was reached
    const committed = ['committed', 'starting', 'running'].includes(state);
    if (!committed) await waitUntil('the quiesce to run out', async () => (await client.disk('k0')).quiesce === undefined);

    const resumed = await ferry(['cutover', 'resume', id, '--db', g.dbPath, '--json']);
    const report = JSON.parse(resumed.stdout) as CutoverReport;
    const rolledBack = ['pausing', 'draining', 'applying', 'verifying'].includes(state);
    expect(report.state, resumed.stderr).toBe(rolledBack ? 'rolled back' : 'healthy');
    expect(await vmState({ qmpSocketPath: source.qmpSocketPath })).toBe(rolledBack ? 'running' : 'absent');
    expect(await vmState({ runDir: g.destinations.get('solo')! })).toBe(rolledBack ? 'absent' : 'running');
    const disk = await client.disk('k0');
    expect(disk.quiesce).toBeUndefined();
    if (rolledBack) {
      // The guest writes on at the source, and the replica keeps following it.
      const before = (await client.disk('k0')).tracker.currentSeq;
      await waitUntil('the source guest to write again', async () => (await client.disk('k0')).tracker.currentSeq > before);
      expect(disk.fence).toBeUndefined();
    } else {
      expect(disk.fence).toBeDefined();
      const console = await readFile(join(g.destinations.get('solo')!, 'console.log'), 'utf8');
      expect(guestVerifyReports(console).map((r) => r.ok)).toEqual([true]);
      // Never started twice: a VM that ran before the kill is the one that runs now.
      if (pidBefore !== undefined) expect(await destinationPid(g)).toBe(pidBefore);
    }
  });
}

it('a store that goes away during the drain rolls the cutover back, the source running again', async () => {
  const g = await group('nostore', { vms: [{ name: 'solo', disks: ['n0'] }], schedule: { hold: true } });
  const { run, id } = await startHeld(g);
  const storeDir = g.store.slice('file:'.length);
  const { rename, writeFile } = await import('node:fs/promises');
  await rename(storeDir, `${storeDir}.away`);
  await writeFile(storeDir, 'not a directory');
  expect((await ferry(['cutover', 'go', id, '--db', g.dbPath])).code).toBe(0);
  const result = await run.done;
  const report = JSON.parse(result.stdout) as CutoverReport;
  expect(report.state, result.stderr).toBe('rolled back');
  expect(await vmState({ qmpSocketPath: g.sources.get('solo')!.qmpSocketPath })).toBe('running');
  expect(await vmState({ runDir: g.destinations.get('solo')! })).toBe('absent');
  expect((await new FilterControlClient(g.filter.control).disk('n0')).quiesce).toBeUndefined();
});

it('a cutover waits for its time, and gives up at the end of its window when a disk never gets ready: nothing was paused', async () => {
  const g = await group('window', { vms: [{ name: 'solo', disks: ['w0'] }] });
  // Parked in bitmap mode, the disk owes a resync: the pre-checks cannot pass.
  const client = new FilterControlClient(g.filter.control);
  await client.setMode('w0', 'bitmap', 'test');
  const at = new Date(Date.now() + 1500).toISOString();
  const result = await ferry(['cutover', '--plan', g.planPath, '--db', g.dbPath, '--at', at, '--window', '3s', '--json']);
  expect(result.code, result.stderr).toBe(7);
  const report = JSON.parse(result.stdout) as CutoverReport;
  expect(report.state).toBe('failed');
  expect(report.error).toMatch(/the window ended before the cutover could start \(nothing was paused\): solo\/w0: bitmap/);
  const events = new CutoverRecords(openDatabase(g.dbPath)).events(report.id);
  expect(events.map((e) => e.state)).toEqual(expect.arrayContaining(['waiting', 'pre-checks', 'failed']));
  expect(events.find((e) => e.state === 'pre-checks')!.atMs).toBeGreaterThanOrEqual(Date.parse(at));
  expect(await vmState({ qmpSocketPath: g.sources.get('solo')!.qmpSocketPath })).toBe('running');
  expect((await client.disk('w0')).quiesce).toBeUndefined();
});

it('a held cutover cancelled by the operator rolls back without pausing anything', async () => {
  const g = await group('cancel', { vms: [{ name: 'solo', disks: ['c0'] }], schedule: { hold: true } });
  const { run, id } = await startHeld(g);
  const cancel = await ferry(['cutover', 'cancel', id, '--db', g.dbPath]);
  expect(cancel.code, cancel.stderr).toBe(0);
  const result = await run.done;
  expect(result.code).toBe(130);
  expect(JSON.parse(result.stdout)).toMatchObject({ state: 'rolled back', error: 'cancelled by the operator before anything was paused' });
  expect(await vmState({ qmpSocketPath: g.sources.get('solo')!.qmpSocketPath })).toBe('running');
  // A second cancel, or a go, of a finished cutover is refused.
  expect((await ferry(['cutover', 'go', id, '--db', g.dbPath])).code).toBe(7);
});
