#!/usr/bin/env node
// Benchmark of the downtime of a whole-VM cutover, run by scripts/bench/cutover: ferry's
// `ferry cutover --plan` (file: store, verify deltas) against QEMU's own live migration,
// the same test guest (scripts/build-test-guest) writing steadily in both, on this host.
//
//   node scripts/bench/lib/cutover-bench.mjs [--runs 10] [--size 256M] [--memory 256]
//       [--blocks 256] [--sleep 0.1] [--steady 3] [--accel tcg|kvm] [--only ferry|qemu]
//       [--poll-ms MS]                       (after npm run build; see scripts/bench/cutover)
//
// ferry, RUNS times, each from a fresh set-up (only the guest build is shared):
//   a sparse raw disk of --size; `ferry filter` serving it over NBD (store file:DIR); the
//   source QEMU booting the guest from it (ferry.blocks=--blocks, ferry.sleep=--sleep: one
//   "generation" rewrites the region with 4 KiB O_DIRECT writes, then flushes, sleeps and
//   goes on); once it wrote generation 2: `ferry base-copy`, `ferry replica init`, a
//   follower (`ferry replica apply --follow`, its default poll unless --poll-ms), --steady
//   seconds of streaming, then `ferry cutover --plan PLAN --db DB --json` of a one-VM plan
//   (verify: deltas; the destination QEMU boots the guest from the replica with
//   ferry.verify=1; health: the console shows "FERRY-GUEST: verify done").
//   From the JSON report, per VM: downtimeToRunningMs (source paused -> destination QEMU
//   launched and answering QMP) and downtimeToHealthyMs (-> the destination guest checked
//   the data it wrote at the source and printed "verify done"). ferry's clock starts when
//   QMP `stop` has returned, i.e. once QEMU has also drained and flushed the disk; the bench
//   also gives the source QEMU a second QMP monitor of its own and records its STOP event
//   (vCPUs stopped, sent before that drain): "STOP -> running" is measured from there.
//   The phases inside the pause come from the cutover's events in the state database:
//   quiesce (paused -> draining), drain, apply, verify, fence+mark+stop source (committed ->
//   starting: fence, replica marked cut over, source QEMU quit), launch (-> running).
//
// QEMU (the peer), one guest, RUNS migrations in a chain on this host: the same kernel,
// initramfs and command line (without verify), the same --memory and accel, its disk a
// local sparse raw file of --size that every QEMU of the chain opens (the same file is the
// "shared storage": both processes of a migration have it open, and on one host they share
// the page cache). QEMU's image locking stays on, as by default: an incoming QEMU opens the
// image inactive and takes its locks only when the migration hands the disk over, after
// the source let go of them, so `file.locking=off` is not needed. For each migration: a
// destination QEMU with `-incoming unix:SOCK`, --steady seconds (and at least one new
// generation) of the guest writing at the source, QMP `migrate` (uri unix:SOCK) with
// QEMU's default migration parameters (printed), `query-migrate` polled every 20 ms until
// "completed"; its `downtime` (ms), and STOP on the source -> RESUME on the destination
// from the two QMP events' timestamps (host wall clock, microseconds); then the source
// quits and the destination is the next source. "STOP -> next write" is the time until
// the guest at the destination printed its next "wrote gen" (a generation finished: the
// workload moves again), the nearest thing it has to ferry's "healthy".
//
// These do not move the same things: QEMU moves RAM and device state and the guest goes on
// where it was; ferry moves disks, and the destination VM boots cold from them. "Running" is
// a resumed guest for QEMU and a launched QEMU (the guest's kernel just starting) for ferry.
//
// p50 and p99 are nearest-rank quantiles (with fewer than 100 runs p99 is the maximum).
// Goal (ferry, file: store): paused -> destination running p50 < 500 ms and p99 < 1 s.
// Per-run details go to stderr; the table to stdout.
//
// Environment: FERRY_DIST (the built ferry to measure, default ./dist), BENCH_DIR (default /tmp).
import { spawn, execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { cpus, loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const root = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../..');
const dist = resolve(process.env.FERRY_DIST ?? join(root, 'dist'));
const { QemuVm, QmpClient, CutoverRecords } = await import(pathToFileURL(join(dist, 'cutover/index.js')).href);
const { openDatabase } = await import(pathToFileURL(join(dist, 'core/index.js')).href);
const { FilterControlClient } = await import(pathToFileURL(join(dist, 'api/index.js')).href);
const ferryMain = join(dist, 'cli/main.js');

const { values: opts } = parseArgs({
  options: {
    runs: { type: 'string', default: '10' },
    size: { type: 'string', default: '256M' },
    memory: { type: 'string', default: '256' },
    blocks: { type: 'string', default: '256' },
    sleep: { type: 'string', default: '0.1' },
    steady: { type: 'string', default: '3' },
    accel: { type: 'string', default: 'tcg' },
    only: { type: 'string' },
    'poll-ms': { type: 'string' },
  },
});
const runs = Number(opts.runs);
const sizeBytes = parseSize(opts.size);
const memoryMiB = Number(opts.memory);
const blocks = Number(opts.blocks);
const steadyMs = Number(opts.steady) * 1000;
const accel = opts.accel;
if (!(runs >= 1) || !(memoryMiB >= 64) || !(blocks >= 1) || !(steadyMs >= 0) || !['tcg', 'kvm'].includes(accel) || (opts.only && !['ferry', 'qemu'].includes(opts.only))) {
  throw new Error(`bad options: ${JSON.stringify(opts)}`);
}
if ((blocks * 4096) > sizeBytes) throw new Error(`--blocks ${blocks} (4 KiB each) does not fit --size ${opts.size}`);
const sides = opts.only ? [opts.only] : ['qemu', 'ferry'];

const log = (...parts) => process.stderr.write(`${parts.join(' ')}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, Math.max(0, ms)));
const work = await mkdtemp(join(process.env.BENCH_DIR ?? '/tmp', 'ferry-bench-cutover.'));

function parseSize(text) {
  const m = /^(\d+)([KMGT]?)$/i.exec(text);
  if (!m) throw new Error(`--size: expected e.g. 256M, got ${text}`);
  return Number(m[1]) * 1024 ** ' KMGT'.indexOf((m[2] || ' ').toUpperCase());
}

function guestAppend({ verify }) {
  const parts = ['console=ttyS0', 'quiet', 'panic=-1', `ferry.blocks=${blocks}`, 'ferry.first=0', 'ferry.loop=1', `ferry.sleep=${opts.sleep}`, 'ferry.disks=vda'];
  if (verify) parts.push('ferry.verify=1');
  return parts.join(' ');
}

function execQuiet(file, args) {
  return new Promise((resolve, reject) => {
    execFile(file, args, { timeout: 180_000 }, (err, stdout, stderr) => (err ? reject(new Error(`${file} failed: ${stderr.trim() || err.message}`)) : resolve(stdout)));
  });
}

/** Runs the ferry CLI of FERRY_DIST; `done` resolves with code, signal, stdout and stderr. */
function startFerry(args) {
  const child = spawn(process.execPath, [ferryMain, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const done = new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
  return { child, done, out: () => stdout, err: () => stderr };
}

async function ferry(args) {
  const result = await startFerry(args).done;
  if (result.code !== 0) throw new Error(`ferry ${args.join(' ')} exited ${result.code ?? result.signal}: ${result.stderr.trim()}`);
  return result.stdout;
}

const eventMs = (e) => e.timestamp.seconds * 1000 + e.timestamp.microseconds / 1000;

/** Rejects after `ms` unless `promise` settles first. */
function within(promise, ms, what) {
  let timer;
  return Promise.race([promise, new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms)))]).finally(() => clearTimeout(timer));
}

const cleanups = [];
async function cleanupAll() {
  for (const fn of cleanups.splice(0).reverse()) await fn().catch((err) => log(`cleanup: ${err.message}`));
}
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => {
    log(`interrupted (${signal}): cleaning up`);
    void cleanupAll().finally(() => rm(work, { recursive: true, force: true }).finally(() => process.exit(130)));
  });
}

// ---------------------------------------------------------------------------------------
// ferry

async function ferryRun(run, guest) {
  const dir = join(work, `f${run}`);
  const srcDir = join(dir, 'src');
  const dstDir = join(dir, 'dst');
  await mkdir(srcDir, { recursive: true });
  const image = join(dir, 'vm0.img');
  const replica = join(dir, 'vm0.replica.img');
  await writeFile(image, '');
  await truncate(image, sizeBytes);
  const store = `file:${join(dir, 'store')}`;
  const local = [];
  const cleanup = async () => {
    for (const fn of local.splice(0).reverse()) await fn().catch((err) => log(`ferry run ${run} cleanup: ${err.message}`));
  };
  cleanups.push(cleanup);
  try {
    const filter = startFerry(['filter', '--disk', `vm0=${image}`, '--state-dir', join(dir, 'state'), '--store', store]);
    local.push(async () => {
      if (filter.child.exitCode === null && filter.child.signalCode === null) filter.child.kill('SIGTERM');
      await within(filter.done, 30_000, 'ferry filter to stop').catch(() => filter.child.kill('SIGKILL'));
    });
    for (let i = 0; i < 300 && !/^control /m.test(filter.out()); i++) {
      if (filter.child.exitCode !== null) throw new Error(`ferry filter exited: ${filter.err()}`);
      await sleep(50);
    }
    const control = /^control (\S+)$/m.exec(filter.out())?.[1];
    const exported = /^export vm0 (\S+)$/m.exec(filter.out())?.[1];
    if (!control || !exported) throw new Error(`ferry filter did not print its sockets: ${filter.out()} ${filter.err()}`);
    const socketPath = new URL(exported).searchParams.get('socket');

    const benchQmpPath = join(srcDir, 'bench.sock');
    const source = new QemuVm({
      runDir: srcDir,
      kernelPath: guest.kernel,
      initrdPath: guest.initrd,
      append: guestAppend({ verify: false }),
      disks: [{ socketPath, exportName: 'vm0' }],
      accel,
      memoryMiB,
      extraArgs: ['-qmp', `unix:${benchQmpPath},server=on,wait=off`],
    });
    await source.start();
    local.push(() => source.kill());
    await source.waitForConsole(/FERRY-GUEST: wrote gen 2\b/, 120_000);
    await source.disconnect(); // qmp.sock is ferry's; the bench keeps its own monitor
    const bench = await QmpClient.connect(benchQmpPath, { retryForMs: 5000 });
    local.push(() => bench.close());
    let stopAtMs;
    bench.on('STOP', (e) => (stopAtMs ??= eventMs(e)));

    const manifest = (await ferry(['base-copy', '--control', control, '--disk', 'vm0', '-q'])).trim();
    await ferry(['replica', 'init', '--store', store, '--disk', 'vm0', '--manifest', manifest, replica, '-q']);
    const follower = startFerry(['replica', 'apply', '--store', store, replica, '--follow', ...(opts['poll-ms'] ? ['--poll-ms', opts['poll-ms']] : [])]);
    local.push(async () => {
      if (follower.child.exitCode === null && follower.child.signalCode === null) follower.child.kill('SIGKILL');
      await follower.done;
    });

    // Steady streaming; the guest's write rate as the filter's NBD counters see it.
    const client = new FilterControlClient(control);
    const before = { at: performance.now(), bytes: (await client.disk('vm0')).nbd.bytesWritten };
    await sleep(steadyMs);
    const status = await client.disk('vm0');
    const writeRate = ((status.nbd.bytesWritten - before.bytes) / (performance.now() - before.at)) * 1000;

    const plan = {
      version: 1,
      name: 'bench',
      store,
      vms: [
        {
          name: 'guest',
          disks: [{ id: 'vm0', control, replica }],
          source: { driver: 'qemu', qmp: source.qmpSocketPath },
          destination: { driver: 'qemu', runDir: dstDir, launch: { kernel: guest.kernel, initrd: guest.initrd, append: guestAppend({ verify: true }), memoryMiB, accel } },
          health: { console: 'FERRY-GUEST: verify done', timeout: '120s' },
        },
      ],
      schedule: { verify: 'deltas', window: '2m' },
    };
    const planPath = join(dir, 'plan.json');
    const dbPath = join(dir, 'ferry.db');
    await writeFile(planPath, JSON.stringify(plan, null, 2));
    local.push(async () => {
      const vm = await QemuVm.attach({ runDir: dstDir, timeoutMs: 5000 }).catch(() => undefined);
      await vm?.kill();
    });
    const cutover = await startFerry(['cutover', '--plan', planPath, '--db', dbPath, '--json']).done;
    let report;
    try {
      report = JSON.parse(cutover.stdout);
    } catch {
      throw new Error(`ferry cutover exited ${cutover.code ?? cutover.signal} without a JSON report: ${cutover.stderr.trim()}`);
    }
    const vm = report.vms?.[0];
    if (cutover.code !== 0 || report.state !== 'healthy' || vm?.downtimeToRunningMs === undefined) {
      throw new Error(`ferry cutover exited ${cutover.code ?? cutover.signal}, state ${report.state}: ${report.error ?? ''} ${cutover.stderr.trim().split('\n').slice(-5).join(' | ')}`);
    }
    const consoleText = await readFile(join(dstDir, 'console.log'), 'utf8').catch(() => '');
    const verified = /FERRY-GUEST: verify OK disk=vda/.test(consoleText);
    if (!verified) throw new Error(`the destination guest did not say "verify OK": ${consoleText.slice(-500)}`);

    // Where the pause went: the cutover's events, and the VM's times, from its database.
    const db = openDatabase(dbPath);
    let phases;
    let vmRecord;
    try {
      const records = new CutoverRecords(db);
      const events = records.events(report.id);
      vmRecord = records.vms(report.id)[0];
      const at = (state) => events.find((e) => e.state === state)?.atMs;
      const span = (a, b) => (a !== undefined && b !== undefined ? b - a : NaN);
      phases = {
        quiesce: span(vmRecord.pausedAtMs, at('draining')),
        drain: span(at('draining'), at('applying')),
        apply: span(at('applying'), at('verifying')),
        verify: span(at('verifying'), at('committed')),
        // the source fenced, the replica marked cut over, the source QEMU quit, the replica let go
        'fence+mark+stop source': span(at('committed'), at('starting')),
        launch: span(at('starting'), vmRecord.runningAtMs),
      };
    } finally {
      db.close();
    }
    const followerExit = await within(follower.done, 10_000, 'the follower to exit').catch(() => ({ code: 'still running' }));
    const result = {
      running: vm.downtimeToRunningMs,
      healthy: vm.downtimeToHealthyMs,
      fromStop: stopAtMs === undefined ? NaN : vmRecord.runningAtMs - stopAtMs,
      stopCommand: stopAtMs === undefined ? NaN : vmRecord.pausedAtMs - stopAtMs,
      phases,
      finalBytes: report.finalBytes,
      writeRate,
    };
    log(
      `ferry run ${run}: paused->running ${result.running} ms, ->healthy ${result.healthy} ms, STOP->running ${result.fromStop.toFixed(0)} ms ` +
        `(QMP stop returned ${Math.round(result.stopCommand) || 0} ms after STOP); ` +
        `${Object.entries(phases).map(([k, v]) => `${k} ${v}`).join(', ')}; final delta ${result.finalBytes} B; ` +
        `guest writes ${(writeRate / 1e6).toFixed(2)} MB/s; follower exit ${followerExit.code}; destination verify OK`,
    );
    return result;
  } finally {
    await cleanup();
    cleanups.splice(cleanups.indexOf(cleanup), 1);
    await rm(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------
// QEMU live migration

/**
 * RUNS migrations in a chain. A migration whose guest does not go on at the destination
 * (QEMU exits, or no new generation within a minute) is counted as failed, with the tail of
 * its console, and the chain starts again from a freshly booted source; at most RUNS failures.
 */
async function qemuChain(guest) {
  const dir = join(work, 'q');
  await mkdir(dir, { recursive: true });
  const image = join(dir, 'disk.img');
  await writeFile(image, '');
  await truncate(image, sizeBytes);
  const disk = ['-blockdev', `driver=raw,node-name=disk0,file.driver=file,file.filename=${image}`, '-device', 'virtio-blk-pci,drive=disk0'];
  const vms = new Set();
  const cleanup = async () => {
    for (const vm of vms) await vm.kill().catch(() => undefined);
  };
  cleanups.push(cleanup);
  let launched = 0;
  const launch = async (incoming) => {
    const runDir = join(dir, `${launched++}`);
    await mkdir(runDir, { recursive: true });
    const vm = new QemuVm({
      runDir,
      kernelPath: guest.kernel,
      initrdPath: guest.initrd,
      append: guestAppend({ verify: false }),
      accel,
      memoryMiB,
      extraArgs: [...disk, ...(incoming ? ['-incoming', `unix:${incoming}`] : [])],
    });
    vms.add(vm);
    await vm.start();
    return vm;
  };
  const drop = async (vm) => {
    vms.delete(vm);
    await vm.kill().catch(() => undefined);
  };
  const boot = async () => {
    const vm = await launch();
    await vm.waitForConsole(/FERRY-GUEST: wrote gen 2\b/, 120_000);
    return vm;
  };
  const gens = (vm) => vm.console.match(/FERRY-GUEST: wrote gen \d+/g)?.length ?? 0;
  const results = [];
  const failures = [];
  try {
    let source = await boot();
    const params = await source.qmp.execute('query-migrate-parameters');
    log(`qemu: migration parameters: downtime-limit ${params['downtime-limit']} ms, max-bandwidth ${params['max-bandwidth']} B/s, multifd off (defaults)`);
    for (let attempt = 1; results.length < runs && failures.length < runs; attempt++) {
      const sock = join(dir, `mig${attempt}.sock`);
      const dest = await launch(sock);
      for (let i = 0; i < 100 && !existsSync(sock); i++) await sleep(50);
      // Steady state: --steady seconds and at least one new generation at the source.
      const genBefore = gens(source);
      const wr = async () => (await source.qmp.execute('query-blockstats'))[0]?.stats.wr_bytes ?? NaN;
      const t0 = performance.now();
      const bytes0 = await wr();
      await sleep(steadyMs);
      for (let i = 0; i < 600 && gens(source) <= genBefore; i++) await sleep(50);
      const writeRate = (((await wr()) - bytes0) / (performance.now() - t0)) * 1000;
      const stop = source.qmp.waitForEvent('STOP', 120_000);
      const resume = dest.qmp.waitForEvent('RESUME', 120_000);
      await source.qmp.execute('migrate', { uri: `unix:${sock}` });
      let info;
      for (;;) {
        info = await source.qmp.execute('query-migrate');
        if (['completed', 'failed', 'cancelled'].includes(info.status)) break;
        await sleep(20);
      }
      if (info.status !== 'completed') throw new Error(`qemu migration ${attempt}: ${info.status}: ${info['error-desc'] ?? ''}`);
      const [stopEvent, resumeEvent] = await Promise.all([stop, resume]);
      // The guest goes on at the destination: the first generation it finishes there (its
      // console is empty until the guest resumes).
      let progressAt;
      try {
        await dest.waitForConsole(/FERRY-GUEST: wrote gen \d+\r?\n/, 60_000);
        progressAt = Date.now();
      } catch (err) {
        const tail = dest.console.split('\n').filter((l) => /panic|RIP:|BUG|Oops|error|FERRY-GUEST: (error|verify)/i.test(l)).slice(0, 6).map((l) => l.trim());
        failures.push({ attempt, message: `the guest did not go on at the destination (${err.message.split('\n')[0]}): ${tail.join(' | ')}` });
        log(`qemu migration ${attempt} FAILED (downtime ${info.downtime} ms, completed): the guest did not go on at the destination; its console:\n${dest.console.slice(-3000)}`);
        await drop(source);
        await drop(dest);
        source = await boot(); // the chain starts again
        continue;
      }
      await source.quit();
      vms.delete(source);
      const result = {
        downtime: info.downtime,
        wall: eventMs(resumeEvent) - eventMs(stopEvent),
        progress: progressAt - eventMs(stopEvent),
        total: info['total-time'],
        transferred: info.ram?.transferred,
        writeRate,
      };
      results.push(result);
      log(
        `qemu migration ${attempt}: downtime ${result.downtime} ms, STOP->RESUME ${result.wall.toFixed(1)} ms, STOP->next write ${result.progress.toFixed(0)} ms, ` +
          `total ${result.total} ms, RAM sent ${((result.transferred ?? 0) / 1e6).toFixed(1)} MB, setup ${info['setup-time']} ms; guest writes ${(writeRate / 1e6).toFixed(2)} MB/s`,
      );
      source = dest;
    }
  } finally {
    await cleanup();
    cleanups.splice(cleanups.indexOf(cleanup), 1);
    await rm(dir, { recursive: true, force: true });
  }
  return { results, failures };
}

// ---------------------------------------------------------------------------------------

const quantile = (values, q) => {
  const sorted = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] : NaN;
};
const stats = (values) => ({ p50: quantile(values, 0.5), p99: quantile(values, 0.99), min: quantile(values, 0), max: quantile(values, 1) });
const fmt = (v) => (Number.isFinite(v) ? (v >= 100 ? v.toFixed(0) : v.toFixed(1)) : '-');
const ratio = (a, b) => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? `${(a / b).toFixed(2)}x` : '-');

const started = Date.now();
const loadBefore = loadavg();
log(`# ferry from ${dist}; ${cpus().length} cores; node ${process.version}; accel ${accel}; dir ${work}`);
let ferryResults = [];
let qemuResults = [];
const ferryFailures = [];
let qemuFailures = [];
let failure;
try {
  const cacheDir = join(root, '.cache', 'test-guest');
  await execQuiet(join(root, 'scripts', 'build-test-guest'), [cacheDir]);
  const guest = { kernel: join(cacheDir, 'vmlinuz'), initrd: join(cacheDir, 'initramfs.cpio.gz') };
  if (sides.includes('qemu')) {
    try {
      ({ results: qemuResults, failures: qemuFailures } = await qemuChain(guest));
    } catch (err) {
      qemuFailures.push({ attempt: '-', message: `the chain stopped: ${err?.message ?? err}` });
      process.exitCode = 1;
      log(`qemu chain failed: ${err?.stack ?? err}`);
    }
  }
  if (sides.includes('ferry')) {
    // A cutover that fails is a finding, not the end of the bench: the next run starts afresh.
    for (let run = 1; run <= runs; run++) {
      try {
        ferryResults.push(await ferryRun(run, guest));
      } catch (err) {
        ferryFailures.push({ run, message: err?.message ?? String(err) });
        process.exitCode = 1;
        log(`ferry run ${run} FAILED: ${err?.stack ?? err}`);
      }
    }
  }
} catch (err) {
  failure = err;
  process.exitCode = 1;
  log(`bench failed: ${err?.stack ?? err}`);
} finally {
  await cleanupAll();
  await rm(work, { recursive: true, force: true });
}
const loadAfter = loadavg();

const f = {
  running: stats(ferryResults.map((r) => r.running)),
  healthy: stats(ferryResults.map((r) => r.healthy)),
  fromStop: stats(ferryResults.map((r) => r.fromStop)),
};
const q = {
  downtime: stats(qemuResults.map((r) => r.downtime)),
  wall: stats(qemuResults.map((r) => r.wall)),
  progress: stats(qemuResults.map((r) => r.progress)),
};
const mean = (values) => values.reduce((a, b) => a + b, 0) / (values.length || 1);
const lines = [];
lines.push('');
lines.push(
  `cutover downtime, one test guest (${memoryMiB} MiB RAM, ${opts.size} disk, ${blocks} x 4 KiB O_DIRECT writes + flush per generation, sleep ${opts.sleep} s), ` +
    `accel ${accel}; ferry: ${ferryResults.length} cutovers${ferryFailures.length ? ` (+${ferryFailures.length} failed)` : ''}, file: store, verify deltas; ` +
    `QEMU: ${qemuResults.length} live migrations${qemuFailures.length ? ` (+${qemuFailures.length} failed)` : ''} over a unix socket, the same raw file disk (image locking on)`,
);
lines.push(
  `(cpus: ${cpus().length}, load average ${loadBefore.map((l) => l.toFixed(2)).join(' ')} before, ${loadAfter.map((l) => l.toFixed(2)).join(' ')} after, ` +
    `${new Date().toISOString().slice(0, 16)}Z, ${((Date.now() - started) / 60000).toFixed(1)} min)`,
);
lines.push(
  `guest writes, mean over the steady seconds before each move: ferry ${(mean(ferryResults.map((r) => r.writeRate)) / 1e6).toFixed(2)} MB/s (through the filter), ` +
    `QEMU ${(mean(qemuResults.map((r) => r.writeRate)) / 1e6).toFixed(2)} MB/s`,
);
lines.push('');
const row = (who, figure, s) => `${who.padEnd(6)}${figure.padEnd(44)}${fmt(s.p50).padStart(8)}${fmt(s.p99).padStart(8)}${fmt(s.min).padStart(8)}${fmt(s.max).padStart(8)}`;
lines.push(`${'who'.padEnd(6)}${'figure (ms)'.padEnd(44)}${'p50'.padStart(8)}${'p99'.padStart(8)}${'min'.padStart(8)}${'max'.padStart(8)}`);
if (ferryResults.length) {
  lines.push(row('ferry', 'paused -> destination running', f.running));
  lines.push(row('ferry', 'paused -> destination healthy (verify done)', f.healthy));
  lines.push(row('ferry', 'source STOP event -> destination running', f.fromStop));
}
if (qemuResults.length) {
  lines.push(row('qemu', 'query-migrate downtime', q.downtime));
  lines.push(row('qemu', 'source STOP -> destination RESUME', q.wall));
  lines.push(row('qemu', 'source STOP -> next generation written', q.progress));
}
lines.push('(p99: nearest rank, so with fewer than 100 runs it is the max)');
if (ferryResults.length) {
  const phaseNames = Object.keys(ferryResults[0].phases);
  lines.push('');
  lines.push(`ferry's pause, p50 of each phase (ms): ${phaseNames.map((p) => `${p} ${fmt(quantile(ferryResults.map((r) => r.phases[p]), 0.5))}`).join(', ')}`);
  lines.push(`ferry: QMP stop returned p50 ${fmt(quantile(ferryResults.map((r) => r.stopCommand), 0.5))} ms after the STOP event; final delta p50 ${fmt(quantile(ferryResults.map((r) => r.finalBytes), 0.5))} bytes`);
}
if (ferryResults.length && qemuResults.length) {
  lines.push('');
  lines.push(`${`ratios ferry/QEMU (${cpus().length} cores; > 1: ferry's is longer)`.padEnd(58)}${'p50'.padStart(10)}${'p99'.padStart(10)}`);
  const ratioRow = (label, a, b) => lines.push(`  ${label.padEnd(56)}${ratio(a.p50, b.p50).padStart(10)}${ratio(a.p99, b.p99).padStart(10)}`);
  ratioRow('ferry paused->running / QEMU downtime', f.running, q.downtime);
  ratioRow('ferry paused->running / QEMU STOP->RESUME', f.running, q.wall);
  ratioRow('ferry STOP->running / QEMU STOP->RESUME', f.fromStop, q.wall);
  ratioRow('ferry paused->healthy / QEMU STOP->next generation', f.healthy, q.progress);
}
lines.push('');
for (const { run, message } of ferryFailures) lines.push(`ferry run ${run} FAILED: ${message.split('\n')[0].slice(0, 400)}`);
for (const { attempt, message } of qemuFailures) lines.push(`qemu migration ${attempt} FAILED: ${message.split('\n')[0].slice(0, 400)}`);
if (ferryFailures.length || qemuFailures.length) lines.push('');
if (sides.includes('ferry') && ferryResults.length === 0) {
  lines.push(`goal ferry paused->running: not measured (no cutover completed${failure ? `: ${failure.message.split('\n')[0]}` : ''})`);
} else if (sides.includes('ferry')) {
  const ok50 = f.running.p50 < 500;
  const ok99 = f.running.p99 < 1000;
  const failed = ferryFailures.length ? `; ${ferryFailures.length} of ${runs} cutovers FAILED` : '';
  lines.push(
    `goal ferry paused->running, file: store (${cpus().length} cores): p50 ${fmt(f.running.p50)} ms < 500 ms: ${ok50 ? 'met' : 'MISSED'}; ` +
      `p99 ${fmt(f.running.p99)} ms < 1000 ms: ${ok99 ? 'met' : 'MISSED'}${failed}; overall: ${ok50 && ok99 && !failed ? 'met' : 'MISSED'}`,
  );
}
lines.push('');
lines.push('raw samples (ms):');
if (ferryResults.length) {
  lines.push(`  ferry paused->running:  ${ferryResults.map((r) => r.running).join(' ')}`);
  lines.push(`  ferry paused->healthy:  ${ferryResults.map((r) => r.healthy).join(' ')}`);
  lines.push(`  ferry STOP->running:    ${ferryResults.map((r) => fmt(r.fromStop)).join(' ')}`);
}
if (qemuResults.length) {
  lines.push(`  qemu downtime:          ${qemuResults.map((r) => r.downtime).join(' ')}`);
  lines.push(`  qemu STOP->RESUME:      ${qemuResults.map((r) => fmt(r.wall)).join(' ')}`);
  lines.push(`  qemu STOP->next gen:    ${qemuResults.map((r) => fmt(r.progress)).join(' ')}`);
}
process.stdout.write(`${lines.join('\n')}\n`);
