#!/usr/bin/env node
// ferry's demo, the orchestration part (scripts/demo installs things, then runs this): the
// live migration of a group of two running QEMU VMs, "db" (two disks) and "app" (one),
// through the migration service, driven with the ferry CLI the way an operator would (the
// web wizard shows the same migration while it runs), with a file: store.
//
//   1. three source disks, db0 with data on it already;
//   2. two agents, as on two hypervisor hosts: the source agent serves the disks over NBD
//      and captures every write; the destination agent will hold the replicas; each has
//      its own state directory and its control API over TLS (certificate pinned by its
//      fingerprint, bearer token);
//   3. two tiny guests boot under QEMU from the source agent's disks and never stop writing;
//   4. `ferry serve`, the service, with an API token; its web wizard's address is printed;
//   5. `ferry host add`, `ferry store add`, `ferry migration create|validate|start`: the
//      service has the source agent copy each disk into the store while the guests write,
//      and the destination agent restore each replica and keep it warm as deltas stream;
//   6. `ferry migration cutover`: pre-checks, then both VMs are paused through the source
//      agent, every disk is drained, applied and verified byte for byte (SHA-256 of source
//      and replica), the group commits, the sources are fenced and stopped, and the
//      destination agent boots the VMs from the replicas in runbook order (db, then app);
//      each destination guest checks the data it wrote at the source, prints OK, and
//      writes on.
import { spawn, execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
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
const guestArgs = (vm, extra = '') =>
  `console=ttyS0 quiet panic=-1 ferry.blocks=512 ferry.first=0 ferry.loop=1 ferry.sleep=0.1 ferry.disks=${vm.disks.map((_, i) => `vd${String.fromCharCode(97 + i)}`).join(',')}${extra}`;
await mkdir(run, { recursive: true });
await makeDisk(image('db0'), 256 * MiB, 48);
await makeDisk(image('db1'), 64 * MiB, 8);
await makeDisk(image('app0'), 64 * MiB, 8);

/** Starts a long-running ferry command; resolves once its stdout shows `ready`, with what it printed. */
const running = new Set();
// Whatever happens, nothing the demo started outlives it.
process.on('exit', () => running.forEach((child) => child.kill('SIGKILL')));
async function start(args, ready) {
  const child = spawn(process.execPath, [ferryBin, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  running.add(child);
  child.on('exit', () => running.delete(child));
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  for (let i = 0; i < 400 && !ready.test(out); i++) {
    if (child.exitCode !== null) break;
    await sleep(50);
  }
  if (!ready.test(out)) throw new Error(`ferry ${args[0]} did not start`);
  return { child, out };
}
const tokenFile = async (name, token) => {
  const path = join(work, `${name}.token`);
  await writeFile(path, `${token}\n`, { mode: 0o600 });
  return path;
};

say(`ferry agent ${disks.map((d) => `--disk ${d}=${d}.img`).join(' ')} --store ${store} --listen 127.0.0.1:0   (the source host)`);
const sourceToken = await tokenFile('source-agent', randomBytes(24).toString('hex'));
const source = await start(['agent', ...disks.flatMap((d) => ['--disk', `${d}=${image(d)}`]), '--state-dir', join(work, 'source-host'), '--store', store, '--socket-dir', run, '--control', control, '--listen', '127.0.0.1:0', '--token-file', sourceToken, '-q'], /^fingerprint /m);
say('ferry agent --listen 127.0.0.1:0   (the destination host: no disks; it will hold the replicas)');
const destinationToken = await tokenFile('destination-agent', randomBytes(24).toString('hex'));
const destination = await start(['agent', '--state-dir', join(work, 'destination-host'), '--listen', '127.0.0.1:0', '--token-file', destinationToken, '-q'], /^fingerprint /m);
const agent = (p) => ({ url: /^agent (\S+)$/m.exec(p.out)[1], fingerprint: /^fingerprint (\S+)$/m.exec(p.out)[1] });
for (const [name, p] of [['source', source], ['destination', destination]]) console.log(`   ${name} agent ${agent(p).url}, certificate ${agent(p).fingerprint.slice(0, 23)}…`);

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
  const vmSource = new QemuVm({
    runDir,
    detached: true,
    kernelPath: guest.kernel,
    initrdPath: guest.initrd,
    append: guestArgs(vm),
    disks: vm.disks.map((d) => ({ socketPath: join(run, `${d}.sock`), exportName: d })),
  });
  say(`source VM ${vm.name} boots under QEMU, its disk${vm.disks.length > 1 ? 's' : ''} ${vm.disks.join(', ')} served by the source agent (NBD)`);
  await vmSource.start();
  await vmSource.waitForConsole(/FERRY-GUEST: wrote gen 1\b/, 90_000);
  await vmSource.disconnect(); // its QMP monitor is for ferry's cutover
  sources.push(vmSource);
}
console.log('   both guests are up, rewriting 2 MiB of each disk, generation after generation');

const db = join(work, 'service', 'ferry.db');
say('ferry serve token create demo; ferry serve --listen 127.0.0.1:0');
const apiToken = await tokenFile('api', await ferry(['serve', 'token', 'create', 'demo', '--db', db]));
// --remote-only: the hosts here are the two agents, as on two machines (no local agent).
const service = await start(['serve', '--remote-only', '--listen', '127.0.0.1:0', '--db', db, '--poll-ms', '250', '-q'], /^db /m);
const serviceUrl = /^url (\S+)$/m.exec(service.out)[1];
console.log(`   the web wizard: ${serviceUrl}/  (sign in with the token in ${apiToken}; it shows this migration live)`);
const cli = (args, options) => ferry([...args, '--service', serviceUrl, '--token-file', apiToken], options);

say('ferry host add (source, with its VMs), ferry host add (destination), ferry store add');
const inventory = join(work, 'inventory.json');
await writeFile(inventory, JSON.stringify({ vms: vms.map((vm) => ({ name: vm.name, disks: vm.disks.map((id) => ({ id })) })) }));
const hostAdd = async (name, role, p, token) => (await cli(['host', 'add', name, '--role', role, '--agent', agent(p).url, '--fingerprint', agent(p).fingerprint, '--agent-token-file', token, ...(role === 'source' ? ['--inventory', inventory] : [])])).split(/\s+/)[0];
const sourceHost = await hostAdd('site-a', 'source', source, sourceToken);
const destinationHost = await hostAdd('site-b', 'destination', destination, destinationToken);
const storeId = (await cli(['store', 'add', 'shared', store])).split(/\s+/)[0];

const migrationPath = join(work, 'migration.json');
await writeFile(
  migrationPath,
  JSON.stringify(
    {
      name: 'demo',
      sourceHost,
      destinationHost,
      store: storeId,
      vms: vms.map((vm) => ({
        name: vm.name,
        disks: vm.disks.map((id) => ({ id })),
        source: { driver: 'qemu', qmp: join(run, `${vm.name}-source`, 'qmp.sock') },
        destination: { driver: 'qemu', runDir: join(run, `${vm.name}-dest`), launch: { kernel: guest.kernel, initrd: guest.initrd, append: guestArgs(vm, ' ferry.verify=1') } },
        health: { console: 'FERRY-GUEST: verify done', timeout: '90s' },
      })),
      runbook: { boot: [{ vms: ['db'], delay: '1s' }, { vms: ['app'] }] },
      cutover: { budget: '2s', verify: 'full' },
    },
    null,
    2,
  ),
);
say(`ferry migration create ${migrationPath}; ferry migration validate; ferry migration start`);
const id = (await cli(['migration', 'create', migrationPath])).split(/\s+/)[0];
await cli(['migration', 'validate', id]);
await cli(['migration', 'start', id]);
console.log(`   migration ${id}: base copies at the source agent, then replicas at the destination agent`);
for (;;) {
  const state = JSON.parse(await cli(['migration', 'status', id, '--json'])).state;
  if (state === 'ready') break;
  if (state === 'failed') throw new Error(`the migration failed: ${await cli(['migration', 'events', id])}`);
  await sleep(500);
}
say('ready: every replica follows its disk; streaming deltas for 4 s (ferry migration status)');
for (let i = 0; i < 4; i++) {
  await sleep(1000);
  const p = JSON.parse(await cli(['migration', 'status', id, '--json']));
  const line = p.disks.map((d) => `${d.disk} ${d.source.mode}, lag ${d.source.lagSeconds.toFixed(2)} s, pause ~${d.source.predictedPauseMs === null ? '?' : Math.round(d.source.predictedPauseMs)} ms`);
  console.log(`   ${line.join(' | ')}`);
}

say(`ferry migration cutover ${id} (runbook: db, then app); ferry migration status --watch`);
await cli(['migration', 'cutover', id]);
const watched = await cli(['migration', 'status', id, '--watch']);
console.log(`   ${watched.split('\n').slice(-1)[0].trim()}`);
const progress = JSON.parse(await cli(['migration', 'status', id, '--json']));
const report = progress.cutover;
const events = await cli(['migration', 'events', id]);
console.log(events.split('\n').map((l) => `   ${l}`).join('\n'));
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
for (const p of [service, source, destination]) {
  p.child.kill('SIGTERM');
  await new Promise((r) => (p.child.exitCode !== null ? r() : p.child.on('close', r)));
}

const identical = hashes.every((h) => h.source === h.atPause);
const verified = checks.filter((c) => / verify OK /.test(c)).length === disks.length && checks.some((c) => /verify done/.test(c));
const ms = (v) => (v === undefined ? '-' : `${Math.round(v)} ms`);
console.log(`
summary
  group             ${report.vms.map((v) => `${v.vm} (${v.disks.map((d) => d.disk).join(', ')})`).join(', ')}: ${report.state}
${report.vms.map((v) => `  ${v.vm.padEnd(18)}downtime ${ms(v.downtimeToRunningMs)} to running, ${ms(v.downtimeToHealthyMs)} to healthy; final deltas ${v.finalBytes} bytes`).join('\n')}
${hashes.map((h) => `  ${h.disk.padEnd(18)}source ${h.source.slice(0, 24)}…  replica at the pause ${(h.atPause ?? '?').slice(0, 24)}…`).join('\n')}
  migration         ${id}: ${progress.state}; the sources ${fences.every(Boolean) ? 'fenced and stopped' : 'NOT all fenced'}
${checks.map((c) => `  guest check       ${c}`).join('\n')}
  result            ${identical && verified ? 'every replica was byte-identical to its source at the pause, and each destination guest verified its data: OK' : 'MISMATCH'}`);
process.exitCode = progress.state === 'done' && report.state === 'healthy' && identical && verified && fences.every(Boolean) ? 0 : 1;
