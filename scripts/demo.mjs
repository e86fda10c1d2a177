#!/usr/bin/env node
// ferry's demo, the orchestration part (scripts/demo installs things, then runs this): the
// live migration of a group of two running QEMU VMs, "db" (two disks) and "app" (one),
// driven through the ferry CLI the way an operator would, with a file: store.
//
//   1. three source disks, db0 with data on it already;
//   2. `ferry filter` serves them over NBD, capturing every write;
//   3. two tiny guests boot under QEMU and never stop writing to their disks;
//   4. `ferry base-copy` copies each disk while the guests write; `ferry replica init`
//      builds each replica at the "destination"; `ferry replica apply --follow` keeps each
//      warm as deltas stream; `ferry status` shows lag;
//   5. `ferry cutover --plan`: pre-checks, then both VMs are paused over QMP, every disk is
//      drained, applied and verified byte for byte (SHA-256 of source and replica), the
//      group commits, the sources are fenced and stopped, and the destination VMs boot from
//      the replicas in runbook order (db, then app); each destination guest checks the data
//      it wrote at the source, prints OK, and writes on.
import { spawn, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const work = process.argv[2];
const ferryBin = join(root, 'bin/ferry');
const { QemuVm } = await import(join(root, 'dist/cutover/index.js'));

const MiB = 1024 * 1024;
const say = (text) => console.log(`== ${text}`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Runs the ferry CLI; resolves with its stdout, rejects with its stderr unless it exits 0. */
function ferry(args, { echo = false } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [ferryBin, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => {
      err += d;
      if (echo) process.stdout.write(`   ${String(d).trimEnd().replaceAll('\n', '\n   ')}\n`);
    });
    child.on('close', (code) => (code === 0 ? resolve(out.trim()) : reject(new Error(`ferry ${args[0]} exited ${code}: ${err.trim()}`))));
  });
}

async function sha256(path) {
  const hash = createHash('sha256');
  for await (const piece of createReadStream(path)) hash.update(piece);
  return hash.digest('hex');
}

async function makeDisk(path, sizeBytes, dataMiB) {
  const file = await open(path, 'w');
  await file.truncate(sizeBytes);
  // Existing data past the region the guest writes, in 1 MiB extents.
  for (let i = 0; i < dataMiB; i++) {
    const data = Buffer.alloc(MiB);
    for (let j = 0; j < MiB; j += 4) data.writeUInt32LE((i * 2654435761 + j * 40503) >>> 0, j);
    await file.write(data, 0, MiB, (16 + i * 4) * MiB);
  }
  await file.close();
}

const vms = [
  { name: 'db', disks: ['db0', 'db1'] },
  { name: 'app', disks: ['app0'] },
];
const disks = vms.flatMap((vm) => vm.disks);
const store = `file:${join(work, 'store')}`;
const run = join(work, 'run');
const control = join(run, 'control.sock');
const image = (disk) => join(work, `${disk}.img`);
const replica = (disk) => join(work, `${disk}.replica.img`);
const guestArgs = (vm, extra = '') =>
  `console=ttyS0 quiet panic=-1 ferry.blocks=512 ferry.first=0 ferry.loop=1 ferry.sleep=0.1 ferry.disks=${vm.disks.map((_, i) => `vd${String.fromCharCode(97 + i)}`).join(',')}${extra}`;
await mkdir(run, { recursive: true });
await makeDisk(image('db0'), 256 * MiB, 48);
await makeDisk(image('db1'), 64 * MiB, 8);
await makeDisk(image('app0'), 64 * MiB, 8);

say(`ferry filter ${disks.map((d) => `--disk ${d}=${d}.img`).join(' ')} --store ${store}`);
const filter = spawn(process.execPath, [ferryBin, 'filter', ...disks.flatMap((d) => ['--disk', `${d}=${image(d)}`]), '--state-dir', join(work, 'state'), '--store', store, '--socket-dir', run, '--control', control, '-q'], {
  stdio: ['ignore', 'pipe', 'inherit'],
});
let filterOut = '';
filter.stdout.on('data', (d) => (filterOut += d));
for (let i = 0; i < 200 && !filterOut.includes('control'); i++) await sleep(50);
if (!filterOut.includes('control')) throw new Error('ferry filter did not start');

const guestDir = join(work, 'guest');
try {
  execFileSync(join(root, 'scripts/build-test-guest'), [guestDir], { stdio: ['ignore', 'ignore', 'pipe'] });
} catch (err) {
  throw new Error(`the demo's guests cannot be built (scripts/build-test-guest): ${String(err.stderr ?? err.message).trim()}`);
}
const guest = { kernel: join(guestDir, 'vmlinuz'), initrd: join(guestDir, 'initramfs.cpio.gz') };
const sources = [];
for (const vm of vms) {
  const runDir = join(run, `${vm.name}-source`);
  await mkdir(runDir, { recursive: true });
  const source = new QemuVm({
    runDir,
    detached: true,
    kernelPath: guest.kernel,
    initrdPath: guest.initrd,
    append: guestArgs(vm),
    disks: vm.disks.map((d) => ({ socketPath: join(run, `${d}.sock`), exportName: d })),
  });
  say(`source VM ${vm.name} boots under QEMU, its disk${vm.disks.length > 1 ? 's' : ''} ${vm.disks.join(', ')} behind the filter (NBD)`);
  await source.start();
  await source.waitForConsole(/FERRY-GUEST: wrote gen 1\b/, 90_000);
  await source.disconnect(); // its QMP monitor is for ferry's cutover
  sources.push(source);
}
console.log('   both guests are up, rewriting 2 MiB of each disk, generation after generation');

const followers = [];
for (const disk of disks) {
  say(`ferry base-copy --disk ${disk} (while the VMs write), ferry replica init, ferry replica apply --follow`);
  const manifestId = await ferry(['base-copy', '--control', control, '--disk', disk, '-q']);
  await ferry(['replica', 'init', '--store', store, '--disk', disk, '--manifest', manifestId, replica(disk), '-q']);
  const follower = spawn(process.execPath, [ferryBin, 'replica', 'apply', '--store', store, replica(disk), '--follow', '-q'], { stdio: 'ignore' });
  followers.push(new Promise((r) => follower.on('close', r)));
  console.log(`   ${disk}: base manifest ${manifestId.slice(0, 16)}…, replica ${replica(disk)}`);
}

say('streaming deltas for 4 s: ferry status');
for (let i = 0; i < 4; i++) {
  await sleep(1000);
  const status = JSON.parse(await ferry(['status', '--control', control, '--json']));
  const line = status.disks.map((d) => `${d.id} ${d.figures.mode}, lag ${d.figures.lagSeconds.toFixed(2)} s, pause ~${d.figures.predictedPauseMs === null ? '?' : Math.round(d.figures.predictedPauseMs)} ms`);
  console.log(`   ${line.join(' | ')}`);
}

const plan = {
  version: 1,
  name: 'demo',
  store,
  vms: vms.map((vm) => ({
    name: vm.name,
    disks: vm.disks.map((d) => ({ id: d, control, replica: replica(d) })),
    source: { driver: 'qemu', qmp: join(run, `${vm.name}-source`, 'qmp.sock') },
    destination: { driver: 'qemu', runDir: join(run, `${vm.name}-dest`), launch: { kernel: guest.kernel, initrd: guest.initrd, append: guestArgs(vm, ' ferry.verify=1') } },
    health: { console: 'FERRY-GUEST: verify done', timeout: '90s' },
  })),
  runbook: { boot: [{ vms: ['db'], delay: '1s' }, { vms: ['app'] }] },
  schedule: { budget: '2s', verify: 'full' },
};
const planPath = join(work, 'plan.json');
await writeFile(planPath, JSON.stringify(plan, null, 2));
say(`ferry cutover --plan ${planPath} (runbook: db, then app)`);
const report = JSON.parse(await ferry(['cutover', '--plan', planPath, '--db', join(work, 'ferry.db'), '--json'], { echo: true }));

const followerCodes = await Promise.all(followers);
const fences = JSON.parse(await ferry(['status', '--control', control, '--json'])).disks.map((d) => d.fence);
const checks = [];
for (const vm of report.vms) {
  const console = await readFile(join(run, `${vm.vm}-dest`, 'console.log'), 'utf8');
  for (const line of console.match(/^FERRY-GUEST: verify .*$/gm) ?? []) checks.push(`${vm.vm}: ${line.replace('FERRY-GUEST: ', '')}`);
}
// The sources are fenced and stopped: they still hold what they held at the pause.
const hashes = await Promise.all(disks.map(async (d) => ({ disk: d, source: await sha256(image(d)), atPause: report.vms.flatMap((v) => v.disks).find((x) => x.disk === d).sha256 })));

for (const vm of vms) {
  const dest = await QemuVm.attach({ runDir: join(run, `${vm.name}-dest`) }).catch(() => undefined);
  await dest?.quit({ timeoutMs: 15_000 });
}
for (const source of sources) await source.kill().catch(() => undefined);
filter.kill('SIGTERM');
await new Promise((r) => filter.on('close', r));

const identical = hashes.every((h) => h.source === h.atPause);
const verified = checks.filter((c) => / verify OK /.test(c)).length === disks.length && checks.some((c) => /verify done/.test(c));
const ms = (v) => (v === undefined ? '-' : `${Math.round(v)} ms`);
console.log(`
summary
  group             ${report.vms.map((v) => `${v.vm} (${v.disks.map((d) => d.disk).join(', ')})`).join(', ')}: ${report.state}
${report.vms.map((v) => `  ${v.vm.padEnd(18)}downtime ${ms(v.downtimeToRunningMs)} to running, ${ms(v.downtimeToHealthyMs)} to healthy; final deltas ${v.finalBytes} bytes`).join('\n')}
${hashes.map((h) => `  ${h.disk.padEnd(18)}source ${h.source.slice(0, 24)}…  replica at the pause ${(h.atPause ?? '?').slice(0, 24)}…`).join('\n')}
  sources           ${fences.every(Boolean) ? 'fenced and stopped' : 'NOT all fenced'}; followers exited ${followerCodes.join(', ')}
${checks.map((c) => `  guest check       ${c}`).join('\n')}
  result            ${identical && verified ? 'every replica was byte-identical to its source at the pause, and each destination guest verified its data: OK' : 'MISMATCH'}`);
process.exitCode = report.state === 'healthy' && identical && verified && fences.every(Boolean) && followerCodes.every((c) => c === 0) ? 0 : 1;
