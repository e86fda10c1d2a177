/**
 * The hypervisor drivers. The qemu driver with real QEMU (TCG) and the test guest: a
 * destination launched detached from raw files, found again by a fresh driver (a restarted
 * coordinator) without a second launch, paused, resumed, health-checked and stopped; the
 * guest booted again on the disks it wrote verifies them and goes on writing; a damaged
 * block fails that verify; a source VM attached by its QMP socket. The hooks driver with
 * small scripts that pretend to be a hypervisor.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chmod, mkdir, open, readdir, readFile, readlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { HooksDriver, QemuDriver, type QemuDestinationSpec } from '../../src/cutover/drivers/index.js';
import { QemuVm } from '../../src/cutover/index.js';
import { tempDir } from '../support/temp.js';
import { checkGuestPattern, guestAppend, guestBlock, guestBlockBytes, guestResumedGeneration, guestVerifyReports, testGuest, type GuestPatternCheck, type TestGuest } from '../support/test-guest.js';

const MiB = 1024 * 1024;
const blocks = 64;
const bootMs = 60_000; // TCG on a loaded 2-core machine

let dir: { path: string; cleanup: () => Promise<void> };
beforeAll(async () => (dir = await tempDir('ferry-vmd-')));
afterAll(async () => {
  // Detached QEMUs outlive a failed test: kill those this file started, by pid.
  if (!dir) return;
  for (const pid of await qemuPids(dir.path)) process.kill(pid, 'SIGKILL');
  await dir.cleanup();
});

describe('the qemu driver', () => {
  let guest: TestGuest;
  let spec: QemuDestinationSpec;
  let disks: string[];
  beforeAll(async () => {
    // Fails (never skips) naming the missing tool or package.
    guest = await testGuest();
    disks = [join(dir.path, 'a.img'), join(dir.path, 'b.img')];
    for (const path of disks) await makeImage(path, 4 * MiB);
    spec = {
      role: 'destination',
      name: 'vm1',
      runDir: join(dir.path, 'dst'),
      binary: guest.qemuBinary,
      kernelPath: guest.kernelPath,
      initrdPath: guest.initrdPath,
      append: guestAppend({ blocks, disks: ['vda', 'vdb'], sleepSeconds: 0.05 }),
      disks: disks.map((file) => ({ file })),
    };
  });

  it('launches the destination from raw files once, also for a restarted coordinator', async () => {
    const first = new QemuDriver(spec);
    expect(first.description).toBe('qemu vm1 (destination)');
    expect((await first.status()).state).toBe('absent');
    await first.start();
    expect(await first.status()).toEqual({ state: 'running', detail: 'running' });
    await first.health({ console: 'FERRY-GUEST: wrote gen 2\\b', timeoutMs: bootMs });
    const pid = await pidIn(spec.runDir);
    expect(await qemuPids(spec.runDir)).toEqual([pid]);
    // Detached: its own process group, nothing of this process's stdio.
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    expect(Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2])).toBe(pid);
    expect(await Promise.all([0, 1, 2].map((fd) => readlink(`/proc/${pid}/fd/${fd}`)))).toEqual(['/dev/null', join(spec.runDir, 'qemu.log'), join(spec.runDir, 'qemu.log')]);

    // A restarted coordinator: a fresh driver over the same run directory finds the VM
    // and does not launch another.
    const second = new QemuDriver(spec);
    expect((await second.status()).state).toBe('running');
    await second.start();
    expect(await pidIn(spec.runDir)).toBe(pid);
    expect(await qemuPids(spec.runDir)).toEqual([pid]);

    await second.pause();
    await second.pause();
    expect(await second.status()).toEqual({ state: 'paused', detail: 'paused' });
    await expect(second.health({ timeoutMs: 300 })).rejects.toThrow(/health check status did not pass within 300 ms: QMP status is paused/);
    await second.resume();
    expect((await first.status()).state).toBe('running');

    // Health: a console pattern the guest never prints fails, naming the check, showing the console.
    await expect(second.health({ console: 'never printed', timeoutMs: 300 })).rejects.toThrow(/health check console \/never printed\/ did not pass within 300 ms[\s\S]*--- console \(tail\)[\s\S]*FERRY-GUEST: wrote gen/);
    await second.health({ command: ['sh', '-c', 'test "$FERRY_VM" = vm1 && test "$FERRY_ACTION" = health'], timeoutMs: 10_000 });
    await expect(second.health({ command: ['sh', '-c', 'echo sick >&2; exit 4'], timeoutMs: 300 })).rejects.toThrow(/health check command .* did not pass .* exited with code 4; stderr:\nsick/);

    await second.stop();
    expect((await first.status()).state).toBe('absent');
    expect(await qemuPids(spec.runDir)).toEqual([]);
    await first.stop(); // nothing runs: nothing to do
    await expect(first.pause()).rejects.toThrow(/cannot pause: the VM does not run/);

    // Stopped at any point, each disk holds a state the writer leaves.
    for (const path of disks) expect((await checkGuestPattern(path, { blocks })).errors).toEqual([]);
  });

  it('boots the guest again on its disks: it verifies them and goes on writing from there', async () => {
    const [a, b] = await Promise.all(disks.map((path) => checkGuestPattern(path, { blocks })));
    const newest = Math.max(a!.maxGen, b!.maxGen);
    const complete = [a!, b!].every((c) => c.minGen === newest);
    expect(newest).toBeGreaterThanOrEqual(2);

    const verifying = new QemuDriver({ ...spec, append: guestAppend({ blocks, disks: ['vda', 'vdb'], verify: true, sleepSeconds: 0.05 }) });
    expect((await verifying.status()).state).toBe('absent'); // the stale pidfile and socket of the last run
    await verifying.start();
    await verifying.health({ console: 'FERRY-GUEST: verify done next=\\d+[\\s\\S]*FERRY-GUEST: wrote gen', timeoutMs: bootMs });
    const console = await readFile(verifying.consolePath!, 'utf8');
    expect(console.match(/FERRY-GUEST: ready/g)).toHaveLength(1); // this boot's console only
    expect(guestVerifyReports(console).map(({ line: _line, ...report }) => report)).toEqual([
      { disk: 'vda', ok: true, gen: a!.maxGen, blocks: atNewest(a!) },
      { disk: 'vdb', ok: true, gen: b!.maxGen, blocks: atNewest(b!) },
    ]);
    const next = guestResumedGeneration(console);
    expect(next).toBe(complete ? newest + 1 : newest);
    await verifying.stop();

    for (const path of disks) {
      const check = await checkGuestPattern(path, { blocks });
      expect(check.errors).toEqual([]);
      expect(check.maxGen).toBeGreaterThanOrEqual(next!);
    }
  });

  it('fails the verify on a damaged block, naming the disk and the block', async () => {
    const file = await open(disks[1]!, 'r+');
    await file.write(Buffer.from('XXXX'), 0, 4, 5 * 4096 + 100);
    await file.close();

    const verifying = new QemuDriver({ ...spec, append: guestAppend({ blocks, disks: ['vda', 'vdb'], verify: true }) });
    await verifying.start();
    await verifying.health({ console: 'FERRY-GUEST: verify (OK|FAILED) disk=vdb', timeoutMs: bootMs });
    await expect(verifying.health({ console: 'verify done', timeoutMs: 300 })).rejects.toThrow(/verify FAILED disk=vdb block=5 byte=100 /);
    const reports = guestVerifyReports(await readFile(verifying.consolePath!, 'utf8'));
    expect(reports.map((r) => [r.disk, r.ok, r.block])).toEqual([
      ['vda', true, undefined],
      ['vdb', false, 5],
    ]);
    expect(reports[1]!.line).toMatch(/expected="ferry-guest block 5 gen \d+" found="ferry-guest block 5 gen \d+"$/);
    await verifying.stop();
  });

  it('resumes a generation the writer left part-way, and refuses disks from different moments', async () => {
    // vda part-way through gen 7 (blocks 0-19), vdb still all at gen 6: as the writer leaves them.
    await writeRegion(disks[0]!, (block) => (block < 20 ? 7 : 6));
    await writeRegion(disks[1]!, () => 6);
    const verifying = new QemuDriver({ ...spec, append: guestAppend({ blocks, disks: ['vda', 'vdb'], verify: true, loop: false }) });
    await verifying.start();
    await verifying.health({ console: 'FERRY-GUEST: done', timeoutMs: bootMs });
    let console = await readFile(verifying.consolePath!, 'utf8');
    expect(guestVerifyReports(console).map((r) => r.line)).toEqual(['FERRY-GUEST: verify OK disk=vda gen=7 blocks=20/64', 'FERRY-GUEST: verify OK disk=vdb gen=6 blocks=64/64']);
    expect(guestResumedGeneration(console)).toBe(7);
    await verifying.stop();
    for (const path of disks) expect(await checkGuestPattern(path, { blocks })).toMatchObject({ errors: [], minGen: 7, maxGen: 7 });

    // Each disk is whole, but vdb is two generations behind vda: not one moment of the writer.
    await writeRegion(disks[1]!, () => 5);
    await verifying.start();
    await verifying.health({ console: 'FERRY-GUEST: error', timeoutMs: bootMs });
    console = await readFile(verifying.consolePath!, 'utf8');
    expect(console).toMatch(/FERRY-GUEST: verify FAILED order: vda gen=7 blocks=64\/64 vdb gen=5 blocks=64\/64/);
    expect(console).not.toMatch(/verify done|wrote gen/);
    await verifying.stop();
  });

  it('attaches to a source VM by its QMP socket: status, health, pause, resume, stop', async () => {
    const runDir = join(dir.path, 'src');
    const image = join(dir.path, 'c.img');
    await makeImage(image, 4 * MiB);
    // The operator's VM.
    await mkdir(runDir);
    const vm = new QemuVm({ runDir, detached: true, binary: guest.qemuBinary, kernelPath: guest.kernelPath, initrdPath: guest.initrdPath, append: guestAppend({ blocks, sleepSeconds: 0.05 }), disks: [{ file: image }] });
    await vm.start();
    const pid = vm.pid!;
    await vm.waitForConsole(/FERRY-GUEST: wrote gen 1\b/, bootMs);
    await vm.disconnect();

    const source = new QemuDriver({ role: 'source', name: 'vm2', qmpSocketPath: vm.qmpSocketPath, consolePath: vm.consolePath });
    expect(await source.status()).toEqual({ state: 'running', detail: 'running' });
    await source.start(); // it runs: nothing to do
    await source.health({ console: 'FERRY-GUEST: wrote gen 2\\b', timeoutMs: bootMs });
    await source.pause();
    expect(await source.status()).toEqual({ state: 'paused', detail: 'paused' });
    await source.resume();
    expect((await source.status()).state).toBe('running');

    // Also attachable directly, e.g. by a coordinator that lost its QemuVm.
    const again = await QemuVm.attach({ runDir });
    expect(again.pid).toBe(pid);
    await again.disconnect();

    await source.stop();
    expect((await source.status()).state).toBe('absent');
    expect(await qemuPids(runDir)).toEqual([]);
    await expect(source.start()).rejects.toThrow(/not running, and ferry does not start a source VM/);
    await expect(QemuVm.attach({ runDir })).rejects.toMatchObject({ code: 'not-found' });
  });
});

describe('the hooks driver', () => {
  let scripts: string;
  let vmScript: string;
  beforeAll(async () => {
    scripts = join(dir.path, 'hooks');
    await mkdir(scripts);
    vmScript = join(scripts, 'vm.sh');
    // A pretend hypervisor: the VM's state is a file; every call is logged.
    await writeFile(
      vmScript,
      `#!/bin/sh
here=$(dirname "$0")
echo "$FERRY_VM $FERRY_ACTION $*" >>"$here/calls"
case "$1" in
  start) echo running >"$here/state"; echo "guest booted" >"$here/console" ;;
  pause) [ -f "$here/state" ] || { echo "vm1: no such domain" >&2; exit 3; }; echo paused >"$here/state" ;;
  resume) echo running >"$here/state" ;;
  stop) rm -f "$here/state" ;;
  status) if [ -f "$here/state" ]; then cat "$here/state"; else echo absent; fi ;;
  hang) sleep 30 ;;
  odd) echo "shut off" ;;
esac
`,
    );
    await chmod(vmScript, 0o755);
  });

  const driver = (extra: Partial<ConstructorParameters<typeof HooksDriver>[0]> = {}) =>
    new HooksDriver({
      name: 'vm1',
      role: 'destination',
      commands: Object.fromEntries(['start', 'pause', 'resume', 'stop', 'status'].map((action) => [action, [vmScript, action]])),
      consolePath: join(scripts, 'console'),
      ...extra,
    });

  it('runs each action with FERRY_VM and FERRY_ACTION, without a shell', async () => {
    const vm = driver();
    expect(vm.description).toBe('hooks vm1 (destination)');
    expect(await vm.status()).toEqual({ state: 'absent', detail: 'absent' });
    await vm.start();
    expect(await vm.status()).toEqual({ state: 'running', detail: 'running' });
    await vm.pause();
    expect((await vm.status()).state).toBe('paused');
    await vm.resume();
    await vm.health({ console: 'guest booted', command: ['sh', '-c', 'test "$FERRY_ACTION" = health'], timeoutMs: 10_000 });
    await vm.stop();
    expect((await vm.status()).state).toBe('absent');
    const calls = (await readFile(join(scripts, 'calls'), 'utf8')).trim().split('\n');
    expect(calls).toEqual(['vm1 status status', 'vm1 start start', 'vm1 status status', 'vm1 pause pause', 'vm1 status status', 'vm1 resume resume', 'vm1 status status', 'vm1 stop stop', 'vm1 status status']);
  });

  it('fails naming the action, the command and its stderr; kills a command that runs too long', async () => {
    const vm = driver({ commands: { pause: [vmScript, 'pause'], stop: [vmScript, 'hang'], status: [vmScript, 'odd'] }, timeoutMs: 300 });
    await expect(vm.pause()).rejects.toThrow(`hooks vm1 (destination): pause failed: ${vmScript} pause exited with code 3; stderr:\nvm1: no such domain`);
    await expect(vm.stop()).rejects.toThrow(`stop failed: ${vmScript} hang did not finish within 300 ms`);
    expect(await vm.status()).toEqual({ state: 'unknown', detail: `${vmScript} odd printed "shut off", not one of running|paused|absent` });
    await expect(vm.resume()).rejects.toMatchObject({ code: 'bad-input', message: expect.stringMatching(/no resume command/) });
    await expect(vm.health({ timeoutMs: 300 })).rejects.toThrow(/status is .*printed "shut off"/);
    await expect(driver({ commands: { start: [join(scripts, 'missing')] } }).start()).rejects.toThrow(/start: cannot run .*missing: spawn .* ENOENT/);
    await expect(driver({ commands: {} }).health({ timeoutMs: 300 })).rejects.toThrow(/needs a health or a status command/);
  });

  it('uses the health command for health, then the console and the check command', async () => {
    const flag = join(scripts, 'healthy');
    const vm = driver({ commands: { health: ['sh', '-c', `test -f ${flag}`] }, consolePath: join(scripts, 'console') });
    await expect(vm.health({ timeoutMs: 300 })).rejects.toThrow(/health check health \(the health command\) did not pass within 300 ms: sh -c .* exited with code 1/);
    await writeFile(flag, '');
    await writeFile(join(scripts, 'console'), 'booting\nlogin: ');
    await vm.health({ console: 'login:', timeoutMs: 10_000 });
    await expect(vm.health({ console: 'never', timeoutMs: 300 })).rejects.toThrow(/console \/never\/ did not pass[\s\S]*--- console \(tail\)[\s\S]*login:/);
  });
});

async function makeImage(path: string, bytes: number): Promise<void> {
  const file = await open(path, 'w');
  await file.truncate(bytes);
  await file.close();
}

/** Writes the guest's region as the writer would have left it: block i at generation gen(i). */
async function writeRegion(path: string, gen: (block: number) => number): Promise<void> {
  const file = await open(path, 'r+');
  try {
    for (let block = 0; block < blocks; block++) await file.write(guestBlock(block, gen(block)), 0, guestBlockBytes, block * guestBlockBytes);
  } finally {
    await file.close();
  }
}

function atNewest(check: GuestPatternCheck): number {
  return check.generations.filter((g) => g === check.maxGen).length;
}

async function pidIn(runDir: string): Promise<number> {
  return Number((await readFile(join(runDir, 'qemu.pid'), 'utf8')).trim());
}

/** Live (not zombie) processes whose command line names `path`: the QEMUs of a run directory. */
async function qemuPids(path: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      const [cmdline, stat] = await Promise.all([readFile(`/proc/${entry}/cmdline`, 'utf8'), readFile(`/proc/${entry}/stat`, 'utf8')]);
      if (cmdline.includes('qemu-system') && cmdline.includes(path) && !/\) [ZX] /.test(stat)) pids.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return pids.sort((x, y) => x - y);
}
