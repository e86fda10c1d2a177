#!/usr/bin/env node
// ferry's demo, the orchestration part (scripts/demo installs things, then runs this):
// a live migration of a running QEMU VM's disk, driven through the ferry CLI the way an
// operator would, with a file: store.
//
//   1. a 256 MiB source disk with data on it;
//   2. `ferry filter` serves it over NBD, capturing every write;
//   3. a tiny guest boots under QEMU with that disk and never stops writing;
//   4. `ferry base-copy` copies the disk while the guest writes; `ferry replica init`
//      builds the replica at the "destination"; `ferry replica apply --follow` keeps it
//      warm as deltas stream; `ferry status` shows lag;
//   5. cutover: the VM is paused over QMP, `ferry cutover --verify full` takes the replica
//      from the follower, drains the final delta, applies it, verifies the replica byte for
//      byte, fences the source disk and reports the pause; the follower sees the cutover
//      and exits;
//   6. the source VM is stopped, and the destination VM boots from the replica.
//
// Where QEMU cannot run, a qemu-io writer stands in for the guest.
import { spawn, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { mkdir, open } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const work = process.argv[2];
const ferryBin = join(root, 'bin/ferry');
const { QemuVm } = await import(join(root, 'dist/cutover/index.js'));

const MiB = 1024 * 1024;
const say = (text) => console.log(`== ${text}`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function ferry(args) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [ferryBin, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('close', (code) => (code === 0 ? resolve(out.trim()) : reject(new Error(`ferry ${args[0]} exited ${code}: ${err.trim()}`))));
  });
}

async function sha256(path) {
  const hash = createHash('sha256');
  for await (const piece of createReadStream(path)) hash.update(piece);
  return hash.digest('hex');
}

async function makeSourceDisk(path) {
  const file = await open(path, 'w');
  await file.truncate(256 * MiB);
  // Some existing data past the region the guest writes: 48 MiB in 1 MiB extents.
  for (let i = 0; i < 48; i++) {
    const data = Buffer.alloc(MiB);
    for (let j = 0; j < MiB; j += 4) data.writeUInt32LE((i * 2654435761 + j * 40503) >>> 0, j);
    await file.write(data, 0, MiB, (16 + i * 4) * MiB);
  }
  await file.close();
}

const source = join(work, 'source.img');
const replica = join(work, 'replica.img');
const store = `file:${join(work, 'store')}`;
const run = join(work, 'run');
await mkdir(run, { recursive: true });
await makeSourceDisk(source);

say(`ferry filter --disk vm1=${source} --store ${store}`);
const filter = spawn(process.execPath, [ferryBin, 'filter', '--disk', `vm1=${source}`, '--state-dir', join(work, 'state'), '--store', store, '--socket-dir', run, '--control', join(run, 'control.sock'), '-q'], {
  stdio: ['ignore', 'pipe', 'inherit'],
});
let filterOut = '';
filter.stdout.on('data', (d) => (filterOut += d));
const control = join(run, 'control.sock');
for (let i = 0; i < 200 && !filterOut.includes('control'); i++) await sleep(50);
if (!filterOut.includes('control')) throw new Error('ferry filter did not start');
const nbdSocket = join(run, 'vm1.sock');

// The source VM.
let vm;
let writer;
const guestDir = join(work, 'guest');
try {
  execFileSync(join(root, 'scripts/build-test-guest'), [guestDir], { stdio: 'ignore' });
  vm = new QemuVm({
    runDir: run,
    kernelPath: join(guestDir, 'vmlinuz'),
    initrdPath: join(guestDir, 'initramfs.cpio.gz'),
    append: 'console=ttyS0 quiet panic=-1 ferry.blocks=1024 ferry.first=0 ferry.loop=1 ferry.sleep=0.1',
    disk: { socketPath: nbdSocket, exportName: 'vm1' },
  });
  say('source VM boots under QEMU with its disk behind the filter (NBD)');
  await vm.start();
  await vm.waitForConsole(/FERRY-GUEST: wrote gen 1\b/, 90_000);
  console.log('   guest is up and rewriting 4 MiB of its disk, generation after generation');
} catch (err) {
  vm = undefined;
  say(`QEMU guest unavailable (${err.message.split('\n')[0]}); a qemu-io writer stands in`);
  const uri = `nbd+unix:///vm1?socket=${nbdSocket}`;
  writer = (async () => {
    for (let n = 0; !writer.stop; n++) {
      execFileSync('qemu-io', ['-f', 'raw', '-c', `write -P ${n % 250} ${(n % 64) * MiB} 1M`, uri], { stdio: 'ignore' });
      await sleep(50);
    }
  })();
}

say('ferry base-copy --disk vm1 (while the VM writes)');
const manifestId = await ferry(['base-copy', '--control', control, '--disk', 'vm1', '-q']);
console.log(`   manifest ${manifestId.slice(0, 16)}…`);
say(`ferry replica init (destination disk ${replica})`);
await ferry(['replica', 'init', '--store', store, '--disk', 'vm1', '--manifest', manifestId, replica, '-q']);

say('streaming deltas for 5 s: ferry status');
const follower = spawn(process.execPath, [ferryBin, 'replica', 'apply', '--store', store, replica, '--follow', '-q'], { stdio: 'ignore' });
for (let i = 0; i < 5; i++) {
  await sleep(1000);
  const status = JSON.parse(await ferry(['status', '--control', control, '--json'])).disks[0];
  const f = status.figures;
  console.log(`   mode ${f.mode}, lag ${f.lagSeconds.toFixed(2)} s / ${f.lagSeq} records, backlog ${(f.backlogBytes / 1024).toFixed(0)} KiB, shipped ${(f.foregroundRateBytesPerSec / 1e6).toFixed(1)} MB/s, predicted pause ${f.predictedPauseMs === null ? '?' : Math.round(f.predictedPauseMs)} ms`);
}
const followerDone = new Promise((r) => follower.on('close', r));

say('cutover: pause the source VM (QMP stop), then ferry cutover --verify full (the follower keeps running)');
const pausedAt = performance.now();
if (vm) await vm.pause();
else {
  writer.stop = true;
  await writer;
}
const result = JSON.parse(await ferry(['cutover', '--control', control, '--store', store, '--replica', replica, '--verify', 'full', '--json']));
const downtimeMs = performance.now() - pausedAt;
const [sourceHash, replicaHash] = [await sha256(source), await sha256(replica)];
const fenced = JSON.parse(await ferry(['status', '--control', control, '--json'])).disks[0].fence;
console.log(`   source disk fenced: ${fenced ? `yes, replication ${fenced.replication.slice(0, 8)}… cut over at seq ${fenced.finalSeq}` : 'NO'}`);
const followerCode = await followerDone;
console.log(`   follower exited ${followerCode} once the replication was cut over`);
if (vm) await vm.quit({ timeoutMs: 15_000 });
filter.kill('SIGTERM');
await new Promise((r) => filter.on('close', r));

let destination = 'not booted (no QEMU)';
if (vm) {
  say('destination VM boots from the replica');
  const nbdDest = join(run, 'dest.sock');
  const server = spawn('qemu-nbd', ['-f', 'raw', '-k', nbdDest, '-x', 'vm1', replica], { stdio: 'ignore' });
  for (let i = 0; i < 100 && !existsSync(nbdDest); i++) await sleep(50);
  const dest = new QemuVm({
    runDir: join(run, 'dest'),
    kernelPath: join(guestDir, 'vmlinuz'),
    initrdPath: join(guestDir, 'initramfs.cpio.gz'),
    append: 'console=ttyS0 quiet panic=-1 ferry.blocks=16 ferry.first=2048 ferry.loop=0 ferry.gens=1',
    disk: { socketPath: nbdDest, exportName: 'vm1' },
  });
  await mkdir(join(run, 'dest'), { recursive: true });
  await dest.start();
  await dest.waitForConsole(/FERRY-GUEST: (done|wrote gen 1)/, 90_000);
  await dest.quit({ timeoutMs: 15_000 });
  server.kill('SIGTERM');
  destination = 'booted from the replica and wrote to it';
}

console.log(`
summary
  source disk       256 MiB, served to the VM by ferry filter over NBD
  base copy         manifest ${manifestId.slice(0, 16)}… (taken while the VM wrote)
  final seq         ${result.finalSeq}
  source paused     ${Math.round(result.pauseMs)} ms inside ferry (drain ${Math.round(result.drainMs)}, apply ${Math.round(result.applyMs)}, verify ${Math.round(result.verifyMs)}, fence ${Math.round(result.commitMs)} ms)
  downtime          ${Math.round(downtimeMs)} ms from VM pause to verified replica and fenced source
  source sha256     ${sourceHash}
  replica sha256    ${replicaHash}
  destination VM    ${destination}
  result            ${sourceHash === replicaHash ? 'replica is byte-identical to the source' : 'MISMATCH'}`);
process.exitCode = sourceHash === replicaHash && fenced && followerCode === 0 ? 0 : 1;
