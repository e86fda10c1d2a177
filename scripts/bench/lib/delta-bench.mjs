#!/usr/bin/env node
// Benchmark of live replication (foreground deltas), run by scripts/bench/delta: one disk
// under DiskReplication, a `file:` store and the replica on this machine, a paced writer
// going through the capture filter (`rep.filter`), as a VM's writes would.
//
//   node scripts/bench/lib/delta-bench.mjs      (after npm run build; see scripts/bench/delta)
//
// Measures, and prints as a table with goals and PASS/MISS:
//   amplification  bytes of delta objects shipped to the store / bytes the writer wrote (the
//                  peer), for 4 KiB random writes over a region and for 1 MiB sequential
//                  writes; no link cap. Goal: sequential <= 1.05.
//   lag            figures().lagSeconds sampled every 100 ms, writer at half the link (link
//                  20 MB/s, writer 10 MB/s of 1 MiB writes): p50/p95/max. Goal: max < 1 s.
//   throttle       bytes the link's Throttle let through (foreground + background) in each 1 s
//                  window / the cap (the peer), with a background copy of a dense image and a
//                  foreground writer running. Goal: every window within 5%.
//   cutover        pause of the disk-level cutover (verify: deltas) under a steady writer
//                  (5 MB/s of 64 KiB random writes), RUNS runs, with its drain/apply/verify
//                  split. Goal: max pause < 200 ms.
//   listing        what one replica-applier poll costs (listDeltas) with 1k/10k/30k deltas
//                  in the store: report only (see benchListing).
//
// Environment: FERRY_DIST (the built ferry to measure, default ./dist), BENCH_DIR (default
// /tmp), RUNS (cutover runs, default 5), ONLY (comma list of amp,lag,throttle,cutover,list),
// SEGMENT_MAX_AGE_MS / APPLY_POLL_MS (override the journal's and the applier's defaults, to
// measure a tuning), CUTOVER_LINK (bytes/s cap during the cutover runs, default 0 = none).
/* global AbortController */
import { createHash, randomFillSync } from 'node:crypto';
import { mkdir, mkdtemp, open, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { createReadStream } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../..');
const dist = resolve(process.env.FERRY_DIST ?? join(root, 'dist'));
const { FileStore, Repository } = await import(pathToFileURL(join(dist, 'store/index.js')).href);
const { DiskReplication, Throttle } = await import(pathToFileURL(join(dist, 'migrate/index.js')).href);

const KiB = 1024;
const MiB = 1024 * 1024;
const runs = Number(process.env.RUNS ?? 5);
const only = new Set((process.env.ONLY ?? 'amp,lag,throttle,cutover,list').split(','));
const envNumber = (name) => (process.env[name] === undefined ? undefined : Number(process.env[name]));
const segmentMaxAgeMs = envNumber('SEGMENT_MAX_AGE_MS');
const applyPollMs = envNumber('APPLY_POLL_MS');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const work = await mkdtemp(join(process.env.BENCH_DIR ?? '/tmp', 'ferry-bench-delta.'));
let seq = 0;
const log = (...parts) => process.stderr.write(`${parts.join(' ')}\n`);

/** A fresh disk (all holes unless `dense`), store and tracker dir; DiskReplication started. */
async function setup({ sizeBytes, throttle, dense = false, journal = {}, backpressure }) {
  const base = join(work, `r${seq++}`);
  const sourcePath = `${base}-source.img`;
  const file = await open(sourcePath, 'w');
  await file.truncate(sizeBytes);
  if (dense) {
    const buf = Buffer.allocUnsafe(4 * MiB);
    for (let at = 0; at < sizeBytes; at += buf.length) {
      randomFillSync(buf);
      await file.write(buf, 0, Math.min(buf.length, sizeBytes - at), at);
    }
  }
  await file.close();
  const storeDir = `${base}-store`;
  const repo = await Repository.openOrInit(new FileStore(storeDir), MiB);
  const rep = await DiskReplication.start({
    diskId: 'disk0',
    sourcePath,
    trackerDir: `${base}-tracker`,
    repo,
    replicaPath: `${base}-replica.img`,
    throttle,
    journal: { ...(segmentMaxAgeMs === undefined ? {} : { segmentMaxAgeMs }), ...journal },
    backpressure,
    ...(applyPollMs === undefined ? {} : { applyPollMs }),
  });
  return { rep, sourcePath, replicaPath: `${base}-replica.img`, storeDir, cleanup: () => rm(`${base}-tracker`, { recursive: true, force: true }) };
}

/**
 * A paced writer through the filter: `ioBytes` writes, sequential (wrapping) or random
 * (aligned to ioBytes, within the first `regionBytes`), `depth` in flight, at
 * `rateBytesPerSec`, until `stop()`. Every write's content differs.
 */
function startWriter(device, { ioBytes, rateBytesPerSec, pattern, regionBytes = device.sizeBytes, depth = 1 }) {
  const slots = Math.floor(regionBytes / ioBytes);
  // The journal references a write's data until the write returns: a buffer is reused only
  // 64 writes later, long after (depth is at most a few).
  const pool = Array.from({ length: 64 }, () => randomFillSync(Buffer.allocUnsafe(ioBytes)));
  let issued = 0;
  let written = 0;
  let stopped = false;
  let errors = 0;
  const started = performance.now();
  let x = 0x9e3779b9;
  const random = () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 4294967296;
  };
  const worker = async () => {
    while (!stopped) {
      const i = issued++;
      const wait = started + (1000 * i * ioBytes) / rateBytesPerSec - performance.now();
      if (wait > 1) await sleep(wait);
      if (stopped) break;
      const data = pool[i % pool.length];
      data.writeUInt32LE(i, 0);
      const offset = pattern === 'seq' ? (i % slots) * ioBytes : Math.floor(random() * slots) * ioBytes;
      try {
        await device.write(data, offset);
        written += ioBytes;
      } catch {
        errors++; // only when the tracker closes under a write held by a finished cutover
      }
    }
  };
  const workers = Array.from({ length: depth }, worker);
  return {
    get written() {
      return written;
    },
    get seconds() {
      return (performance.now() - started) / 1000;
    },
    stop: async () => {
      stopped = true;
      await Promise.all(workers);
      return { written, errors };
    },
    stopSoon: () => (stopped = true),
    workers,
  };
}

async function dirBytes(dir) {
  let total = 0;
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) total += (await stat(join(entry.parentPath ?? entry.path, entry.name))).size;
  }
  return total;
}

async function sha256(path) {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk);
  return hash.digest('hex');
}

const quantile = (sorted, q) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
const rows = [];
const row = (metric, value, goal, peer, pass) => rows.push({ metric, value, goal, peer, verdict: pass === undefined ? '-' : pass ? 'PASS' : 'MISS' });
const mb = (bytes) => `${(bytes / 1e6).toFixed(1)} MB`;

async function amplification(label, writer, seconds) {
  const { rep, storeDir, cleanup } = await setup({ sizeBytes: 256 * MiB, journal: { hardLimitBytes: 1024 * MiB } });
  const w = startWriter(rep.filter, writer);
  await sleep(seconds * 1000);
  const { written } = await w.stop();
  await rep.shipper.drain();
  const shipped = rep.shipper.figures();
  const stored = await dirBytes(join(storeDir, 'deltas'));
  const mode = rep.tracker.mode;
  await rep.close();
  await cleanup();
  const ratio = stored / written;
  log(`amp ${label}: written ${written} B, shipped ${shipped.bytesShipped} B in ${shipped.deltasShipped} deltas, deltas/ holds ${stored} B, resyncs ${shipped.resyncs}, mode ${mode}`);
  return { ratio, written, stored, deltas: shipped.deltasShipped, resyncs: shipped.resyncs };
}

async function benchAmplification() {
  const random = await amplification('4K random', { ioBytes: 4 * KiB, rateBytesPerSec: 4e6, pattern: 'random', regionBytes: 64 * MiB, depth: 4 }, 4);
  row(
    'amplification, 4 KiB random writes (64 MiB region, 4 MB/s, QD4)',
    `${random.ratio.toFixed(4)} (${mb(random.stored)} / ${mb(random.written)}, ${random.deltas} deltas)`,
    'report',
    'bytes written',
  );
  const seq = await amplification('1M seq', { ioBytes: MiB, rateBytesPerSec: 20e6, pattern: 'seq' }, 4);
  row('amplification, 1 MiB sequential writes (20 MB/s)', `${seq.ratio.toFixed(4)} (${mb(seq.stored)} / ${mb(seq.written)}, ${seq.deltas} deltas)`, '<= 1.05', 'bytes written', seq.ratio <= 1.05);
}

async function benchLag() {
  const link = 20e6;
  const throttle = new Throttle(link);
  const { rep, cleanup } = await setup({ sizeBytes: 256 * MiB, throttle });
  const copy = await rep.baseCopy();
  await rep.startReplica(copy.manifestId);
  const w = startWriter(rep.filter, { ioBytes: MiB, rateBytesPerSec: link / 2, pattern: 'seq' });
  await sleep(1000); // warm-up
  const lags = [];
  // The split: age of the oldest change not yet in the store (source side: segment age,
  // seal, throttle, put), from the same kind of (time, source seq) samples figures() uses.
  const shipLags = [];
  const seqs = [];
  const started = performance.now();
  for (let i = 1; performance.now() - started < 8000; i++) {
    const figures = rep.figures();
    const now = performance.now();
    seqs.push({ at: now, seq: figures.sourceSeq });
    const shipped = rep.shipper.figures().shippedThroughSeq;
    const behind = seqs.find((x) => x.seq > shipped);
    shipLags.push(shipped < figures.sourceSeq && behind ? (now - behind.at) / 1000 : 0);
    lags.push(figures.lagSeconds);
    await sleep(started + i * 100 - performance.now());
  }
  const { written } = await w.stop();
  const writerRate = written / w.seconds;
  await rep.close();
  await throttle.close();
  await cleanup();
  const sorted = [...lags].sort((a, b) => a - b);
  const [p50, p95, max] = [quantile(sorted, 0.5), quantile(sorted, 0.95), sorted[sorted.length - 1]];
  const shipSorted = [...shipLags].sort((a, b) => a - b);
  log(`lag, source to store only (s): p50 ${quantile(shipSorted, 0.5).toFixed(2)}, p95 ${quantile(shipSorted, 0.95).toFixed(2)}, max ${shipSorted[shipSorted.length - 1].toFixed(2)}`);
  log(`lag: ${lags.length} samples, writer ${(writerRate / 1e6).toFixed(1)} MB/s, lag s: ${lags.map((l) => l.toFixed(1)).join(' ')}`);
  row(
    `steady-state lag, link 20 MB/s, writer ${(writerRate / 1e6).toFixed(1)} MB/s of 1 MiB`,
    `p50 ${p50.toFixed(2)} s, p95 ${p95.toFixed(2)} s, max ${max.toFixed(2)} s (${lags.length} samples)`,
    'max < 1 s',
    '-',
    max < 1,
  );
}

async function benchThrottle() {
  const cap = 20e6;
  const throttle = new Throttle(cap);
  const { rep, cleanup } = await setup({ sizeBytes: 256 * MiB, throttle, dense: true });
  const abort = new AbortController();
  const copying = rep.baseCopy({ signal: abort.signal }).catch((err) => (abort.signal.aborted ? undefined : Promise.reject(err)));
  const w = startWriter(rep.filter, { ioBytes: MiB, rateBytesPerSec: 5e6, pattern: 'seq' });
  const passed = () => throttle.bytesPassed.foreground + throttle.bytesPassed.background;
  await sleep(500); // warm-up
  // Why a window falls short: nobody waiting for budget (the copy and shipper are the
  // bottleneck), or the event loop stalled longer than the throttle's burst (its refill
  // drops budget beyond 50 ms worth). `waiting` is the Throttle's count of waiting takes.
  const loop = monitorEventLoopDelay({ resolution: 10 });
  loop.enable();
  let probes = 0;
  let idle = 0;
  const prober = setInterval(() => {
    probes++;
    if (throttle.waiting === 0) idle++;
  }, 10);
  const windows = [];
  let prev = { bytes: passed(), fg: throttle.bytesPassed.foreground, at: performance.now() };
  for (let i = 0; i < 8; i++) {
    await sleep(prev.at + 1000 - performance.now());
    const now = { bytes: passed(), fg: throttle.bytesPassed.foreground, at: performance.now() };
    const seconds = (now.at - prev.at) / 1000;
    windows.push({ seconds, rate: (now.bytes - prev.bytes) / seconds, fgRate: (now.fg - prev.fg) / seconds });
    prev = now;
  }
  clearInterval(prober);
  loop.disable();
  abort.abort();
  await w.stop();
  await copying;
  await rep.close();
  await throttle.close();
  await cleanup();
  const ratios = windows.map((w) => w.rate / cap);
  const worst = Math.max(...ratios.map((r) => Math.abs(1 - r)));
  log(
    `throttle: no take waiting in ${((100 * idle) / probes).toFixed(1)}% of 10 ms probes; event loop delay p50 ${(loop.percentile(50) / 1e6).toFixed(1)} ms, ` +
      `p99 ${(loop.percentile(99) / 1e6).toFixed(1)} ms, max ${(loop.max / 1e6).toFixed(1)} ms`,
  );
  log(`throttle windows: ${windows.map((w) => `${(w.rate / 1e6).toFixed(2)} MB/s (fg ${(w.fgRate / 1e6).toFixed(1)}) over ${w.seconds.toFixed(3)} s`).join('; ')}`);
  row(
    'throttle accuracy, cap 20 MB/s, base copy + 5 MB/s deltas, 1 s windows',
    `ratios ${ratios.map((r) => r.toFixed(3)).join(' ')}; worst ${(100 * worst).toFixed(1)}%`,
    'each within 5%',
    'the cap',
    worst <= 0.05,
  );
}

/**
 * Times the steps inside the cutover by wrapping the instances' methods (no change to
 * ferry), counting only calls that start once the cutover has begun:
 *   quiesce  waiting for IO in flight;
 *   seal     the last open segment (waits for a background seal under way; write, fsync,
 *            rename, fsync of the folder);
 *   put      the final delta into the store (write, fsync, rename, fsync of the folder);
 *   release  the journal's seq floor saved (write, fsync, rename, fsync) and the segment deleted;
 *   wait     the rest of the drain: mostly a shipment already under way when the cutover began;
 *   list/get/apply  at the replica: listing deltas, reading and verifying them, and writing
 *            them to the replica (with fsync) plus its state file (write, fsync, rename).
 */
function timeParts(rep) {
  const times = {};
  let since = Infinity;
  const wrap = (object, method, name) => {
    const original = object[method].bind(object);
    object[method] = async (...args) => {
      const t0 = performance.now();
      if (name === 'quiesce') since = t0;
      try {
        return await original(...args);
      } finally {
        if (t0 >= since) times[name] = (times[name] ?? 0) + performance.now() - t0;
      }
    };
  };
  wrap(rep.filter, 'quiesce', 'quiesce');
  wrap(rep.tracker, 'seal', 'seal');
  wrap(rep.shipper, 'put', 'put');
  wrap(rep.tracker, 'release', 'release');
  wrap(rep.options.repo, 'listReplication', 'list');
  wrap(rep.options.repo, 'getDeltaObject', 'get');
  wrap(rep.applier, 'apply', 'apply'); // includes its getDelta
  return {
    times,
    describe: (drainMs) => {
      const t = (k) => times[k] ?? 0;
      const wait = drainMs - t('quiesce') - t('seal') - t('put') - t('release');
      return (
        `drain: quiesce ${t('quiesce').toFixed(1)}, seal ${t('seal').toFixed(1)}, put ${t('put').toFixed(1)}, release ${t('release').toFixed(1)}, wait ${wait.toFixed(1)}; ` +
        `apply: list ${t('list').toFixed(1)}, get ${t('get').toFixed(1)}, apply+persist ${(t('apply') - t('get')).toFixed(1)}`
      );
    },
  };
}

async function benchCutover() {
  const link = Number(process.env.CUTOVER_LINK ?? 0);
  const results = [];
  for (let run = 0; run < runs; run++) {
    const throttle = link > 0 ? new Throttle(link) : undefined;
    const { rep, sourcePath, replicaPath, cleanup } = await setup({ sizeBytes: 64 * MiB, throttle });
    const copy = await rep.baseCopy();
    await rep.startReplica(copy.manifestId);
    const w = startWriter(rep.filter, { ioBytes: 64 * KiB, rateBytesPerSec: 5e6, pattern: 'random', depth: 2 });
    await sleep(2000 + 37 * run); // steady state; land at a different phase of the segment timer each run
    const parts = timeParts(rep);
    const result = await rep.cutover();
    w.stopSoon(); // the writer is held by the paused source
    const identical = (await sha256(sourcePath)) === (await sha256(replicaPath));
    results.push({ ...result, identical });
    log(
      `cutover run ${run + 1}: pause ${result.pauseMs.toFixed(1)} ms (drain ${result.drainMs.toFixed(1)}, apply ${result.applyMs.toFixed(1)}, verify ${result.verifyMs.toFixed(1)}; ${parts.describe(result.drainMs)}), final seq ${result.finalSeq}, replica identical: ${identical}`,
    );
    await rep.close();
    await w.stop();
    await throttle?.close();
    await cleanup();
  }
  const pauses = results.map((r) => r.pauseMs).sort((a, b) => a - b);
  const med = (key) => quantile(results.map((r) => r[key]).sort((a, b) => a - b), 0.5);
  const ok = results.every((r) => r.identical);
  row(
    `cutover pause, writer 5 MB/s of 64 KiB, ${runs} runs${link ? `, link ${link / 1e6} MB/s` : ''}`,
    `pauses ${results.map((r) => r.pauseMs.toFixed(0)).join(' ')} ms; median split drain ${med('drainMs').toFixed(0)} / apply ${med('applyMs').toFixed(0)} / verify ${med('verifyMs').toFixed(0)} ms${ok ? '' : '; REPLICA DIFFERS'}`,
    'max < 200 ms',
    '-',
    ok && pauses[pauses.length - 1] < 200,
  );
}

/**
 * What the replica applier pays per poll (every applyPollMs, and once in every cutover's
 * apply step) as deltas pile up: it lists every delta of the disk, applied or not, and no
 * one deletes applied ones. At 4 deltas a second (250 ms segments) 10,000 deltas are 42
 * minutes of streaming. Empty objects with delta names, in a file: store.
 */
async function benchListing() {
  const root = join(work, 'list-store');
  const repo = await Repository.openOrInit(new FileStore(root), MiB);
  const folder = join(root, 'deltas', 'disk0');
  await mkdir(folder, { recursive: true });
  const cells = [];
  let made = 0;
  for (const count of [1000, 10000, 30000]) {
    for (; made < count; made++) {
      const name = `${String(made * 10 + 1).padStart(20, '0')}-${String(made * 10 + 10).padStart(20, '0')}.journal`;
      await writeFile(join(folder, name), '');
    }
    const times = [];
    for (let i = 0; i < 5; i++) {
      const t0 = performance.now();
      await repo.listDeltas('disk0');
      times.push(performance.now() - t0);
    }
    cells.push(`${count}: ${quantile(times.sort((a, b) => a - b), 0.5).toFixed(1)} ms`);
  }
  await rm(root, { recursive: true, force: true });
  row('applier listDeltas per poll, by deltas in the store', cells.join(', '), 'report', '-');
}

const loadBefore = loadavg();
log(`# ferry from ${dist}; ${cpus().length} cores; node ${process.version}; load average ${loadBefore.map((l) => l.toFixed(2)).join(' ')}; dir ${work}`);
log(`# overrides: segmentMaxAgeMs ${segmentMaxAgeMs ?? 'default'}, applyPollMs ${applyPollMs ?? 'default'}`);
try {
  const sections = { amp: benchAmplification, lag: benchLag, throttle: benchThrottle, cutover: benchCutover, list: benchListing };
  for (const [name, bench] of Object.entries(sections)) {
    if (!only.has(name)) continue;
    try {
      await bench();
    } catch (err) {
      process.exitCode = 1;
      log(`${name} failed: ${err?.stack ?? err}`);
      row(name, `ERROR: ${err?.message ?? err}`, '-', '-', false);
    }
  }
} finally {
  await rm(work, { recursive: true, force: true });
}
const loadAfter = loadavg();

const widths = ['metric', 'value', 'goal', 'peer', 'verdict'].map((k) => Math.max(k.length, ...rows.map((r) => String(r[k]).length)));
const line = (cells) => cells.map((c, i) => String(c).padEnd(widths[i])).join('  ').trimEnd();
const out = [
  '',
  `load average before ${loadBefore.map((l) => l.toFixed(2)).join(' ')}, after ${loadAfter.map((l) => l.toFixed(2)).join(' ')} (${cpus().length} cores)`,
  '',
  line(['metric', 'value', 'goal', 'peer', 'verdict']),
  line(widths.map((w) => '-'.repeat(w))),
  ...rows.map((r) => line([r.metric, r.value, r.goal, r.peer, r.verdict])),
];
process.stdout.write(`${out.join('\n')}\n`);
