#!/usr/bin/env node
// Load test of the migration service, run by scripts/bench/service-load: one `ferry serve`
// steering one migration of DISKS disks at once between two `ferry agent`s (TLS on
// loopback, file: store), with a writer (python3-libnbd, a real NBD client) rewriting
// random 64 KiB blocks of every disk through the source agent while they replicate.
//
//   node scripts/bench/lib/service-load.mjs [--disks 32] [--size 64M] [--data 16M]
//       [--steady 20] [--write-ms 50]            (after npm run build)
//
// Measured, and printed as a table:
//   - the API's response time, p50 and p99 (nearest rank), of the routes a wizard and a
//     Prometheus scraper call while the migration runs: GET /v1/migrations,
//     GET /v1/migrations/{id}/progress, GET /metrics, one after another, all along;
//   - the service's memory: peak RSS (VmHWM) and RSS sampled every 250 ms (max);
//     the agents' peak RSS beside it;
//   - the time to ready (every replica consistent) and of the cutover.
// The migration is then cut over (hooks drivers that only record state: no VM runs; the
// writer stops first) with verify full, and every replica is checked against its source
// (SHA-256 of both files), so a load that broke something does not pass unseen.
//
// Environment: FERRY_DIST (default ./dist), BENCH_DIR (default /tmp).
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../..');
const dist = resolve(process.env.FERRY_DIST ?? join(root, 'dist'));
const ferryMain = join(dist, 'cli/main.js');

const { values: opts } = parseArgs({
  options: {
    disks: { type: 'string', default: '32' },
    size: { type: 'string', default: '64M' },
    data: { type: 'string', default: '16M' },
    steady: { type: 'string', default: '20' },
    'write-ms': { type: 'string', default: '50' },
  },
});
const diskCount = Number(opts.disks);
const steadySeconds = Number(opts.steady);

const dir = await mkdtemp(join(process.env.BENCH_DIR ?? '/tmp', 'ferry-service-load-'));
const children = [];
process.on('exit', () => children.forEach((c) => c.kill('SIGKILL')));
const log = (text) => process.stderr.write(`${new Date().toISOString().slice(11, 23)} ${text}\n`);

/** Starts `ferry ARGS`; resolves once its stdout matches `ready`, with what it printed. */
async function start(args, ready) {
  const child = spawn(process.execPath, [ferryMain, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  for (let i = 0; !ready.test(out); i++) {
    if (child.exitCode !== null || i > 1200) throw new Error(`ferry ${args[0]} did not start: ${err}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return { child, out, err: () => err };
}

function run(command, args, input) {
  return new Promise((resolveRun, reject) => {
    const child = spawn(command, args, { stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    if (input !== undefined) child.stdin.end(input);
    child.on('close', (code) => (code === 0 ? resolveRun(out) : reject(new Error(`${command} ${args.join(' ')} exited ${code}`))));
  });
}

const rss = (pid, field) => readFile(`/proc/${pid}/status`, 'utf8').then((s) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(s)?.[1] ?? 0) * 1024, () => 0);
const mib = (bytes) => `${(bytes / 2 ** 20).toFixed(0)} MiB`;
const quantile = (values, q) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
};

async function sha256(path) {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk);
  return hash.digest('hex');
}

// The disks: DATA of random bytes at the start of each, the rest a hole.
const store = `file:${join(dir, 'store')}`;
const images = [];
for (let i = 0; i < diskCount; i++) {
  const image = join(dir, `d${i}.img`);
  await run(process.execPath, [join(root, 'scripts/bench/lib/make-image.mjs'), image, opts.size, opts.data, opts.size, 'holes']);
  images.push(image);
}
for (const side of ['src', 'dst']) await writeFile(join(dir, `${side}.token`), `bench-${side}-token-0123456789abcdef\n`, { mode: 0o600 });
const agentArgs = (side) => ['agent', '--state-dir', join(dir, side), '--listen', '127.0.0.1:0', '--token-file', join(dir, `${side}.token`), '-q'];
log(`starting the agents (${diskCount} disks of ${opts.size}, ${opts.data} of data each) and the service`);
const source = await start([...agentArgs('src'), ...images.flatMap((image, i) => ['--disk', `d${i}=${image}`]), '--store', store], /^fingerprint /m);
const destination = await start(agentArgs('dst'), /^fingerprint /m);
const db = join(dir, 'service', 'ferry.db');
const token = (await run(process.execPath, [ferryMain, 'serve', 'token', 'create', 'bench', '--db', db])).trim();
const service = await start(['serve', '--listen', '127.0.0.1:0', '--db', db, '-q'], /^db /m);
const url = /^url (\S+)$/m.exec(service.out)[1];

async function api(method, path, body) {
  const res = await fetch(`${url}${path}`, { method, headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) }, ...(body ? { body: JSON.stringify(body) } : {}) });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
  return path === '/metrics' ? text : JSON.parse(text);
}
const agentOf = (p, side) => ({ url: /^agent (\S+)$/m.exec(p.out)[1], fingerprint: /^fingerprint (\S+)$/m.exec(p.out)[1], token: `bench-${side}-token-0123456789abcdef` });
const src = await api('POST', '/v1/hosts', { name: 'source', role: 'source', agent: agentOf(source, 'src') });
const dst = await api('POST', '/v1/hosts', { name: 'destination', role: 'destination', agent: agentOf(destination, 'dst') });
const st = await api('POST', '/v1/stores', { name: 'local', url: store });

// Hooks that only record a state per VM and side: the cutover needs no hypervisor here.
const stateDir = join(dir, 'vm-state');
await mkdir(stateDir);
const word = { pause: 'paused', resume: 'running', stop: 'absent', start: 'running' };
const hook = (side, action) => [
  'sh',
  '-c',
  action === 'status' ? `cat "${stateDir}/${side}-$FERRY_VM" 2>/dev/null || echo ${side === 'source' ? 'running' : 'absent'}` : `echo ${word[action]} > "${stateDir}/${side}-$FERRY_VM"`,
];
const sides = {
  source: { driver: 'hooks', commands: Object.fromEntries(['pause', 'resume', 'stop', 'status'].map((a) => [a, hook('source', a)])) },
  destination: { driver: 'hooks', commands: Object.fromEntries(['start', 'stop', 'status'].map((a) => [a, hook('destination', a)])) },
};
// Four disks per VM.
const vms = [];
for (let i = 0; i < diskCount; i += 4) vms.push({ name: `vm${i / 4}`, disks: images.slice(i, i + 4).map((_, j) => ({ id: `d${i + j}` })), ...sides });
const migration = await api('POST', '/v1/migrations', { name: 'load', sourceHost: src.id, destinationHost: dst.id, store: st.id, vms, cutover: { budget: '30s', window: '10m', verify: 'full', maxLagSeconds: 60 } });
await api('POST', `/v1/migrations/${migration.id}/validate`);

// The API's response times and the service's memory, sampled all along.
const times = { 'GET /v1/migrations': [], 'GET /v1/migrations/{id}/progress': [], 'GET /metrics': [] };
let sampling = true;
let maxRss = 0;
const sampler = (async () => {
  while (sampling) {
    for (const [route, path] of [['GET /v1/migrations', '/v1/migrations'], ['GET /v1/migrations/{id}/progress', `/v1/migrations/${migration.id}/progress`], ['GET /metrics', '/metrics']]) {
      const t0 = performance.now();
      await api('GET', path);
      times[route].push(performance.now() - t0);
    }
    maxRss = Math.max(maxRss, await rss(service.child.pid, 'VmRSS'));
    await new Promise((r) => setTimeout(r, 250));
  }
})();

// The writer: every disk through the source agent's NBD exports, until stopped.
const uris = [...source.out.matchAll(/^export \S+ (\S+)$/gm)].map((m) => m[1]);
const writerCode = `
import nbd, os, random, sys, time
period = float(sys.argv[1]) / 1000
handles = []
for uri in sys.argv[2:]:
    h = nbd.NBD(); h.connect_uri(uri); handles.append(h)
block = 65536
writes = 0
while not os.path.exists(sys.argv[0] + '.stop'):
    for h in handles:
        h.pwrite(os.urandom(block), random.randrange(0, h.get_size() // block) * block); writes += 1
    time.sleep(period)
for h in handles: h.flush(); h.shutdown()
print(writes)
`;
const writerPath = join(dir, 'writer.py');
await writeFile(writerPath, writerCode);
// Debian's python3, which python3-libnbd is for (not whatever python3 comes first on PATH).
const writer = run('/usr/bin/python3', [writerPath, opts['write-ms'], ...uris]);

const t0 = performance.now();
await api('POST', `/v1/migrations/${migration.id}/start`);
log(`migration ${migration.id} started; the writer rewrites a 64 KiB block of every disk each ${opts['write-ms']} ms`);
async function until(state) {
  for (;;) {
    const m = await api('GET', `/v1/migrations/${migration.id}`);
    if (m.state === state) return;
    if (['failed', 'cancelled'].includes(m.state)) throw new Error(`migration ${m.state}: ${m.error}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}
await until('ready');
const readyS = (performance.now() - t0) / 1000;
log(`ready after ${readyS.toFixed(1)} s; ${steadySeconds} s of steady replication`);
await new Promise((r) => setTimeout(r, steadySeconds * 1000));
await writeFile(`${writerPath}.stop`, '');
const writes = Number((await writer).trim());
const t1 = performance.now();
await api('POST', `/v1/migrations/${migration.id}/cutover`, {});
await until('done');
const cutoverS = (performance.now() - t1) / 1000;
sampling = false;
await sampler;
const progress = await api('GET', `/v1/migrations/${migration.id}/progress`);
let equal = 0;
for (const d of progress.disks) if ((await sha256(d.replicaPath)) === (await sha256(images[Number(d.disk.slice(1))]))) equal++;
const peak = await rss(service.child.pid, 'VmHWM');
const agentPeaks = [await rss(source.child.pid, 'VmHWM'), await rss(destination.child.pid, 'VmHWM')];

const lines = [
  `service load: ${diskCount} disks of ${opts.size} (${opts.data} of data each), one migration, ${cpus().length} cores`,
  `writer: ${writes} writes of 64 KiB during the replication; cutover verify full`,
  `replicas equal to their sources: ${equal}/${diskCount}`,
  `time to ready: ${readyS.toFixed(1)} s; cutover (request -> done): ${cutoverS.toFixed(1)} s; cutover ${progress.cutover.state}, downtime ${Math.round(progress.cutover.maxDowntimeToRunningMs)} ms`,
  `service memory: peak RSS ${mib(peak)} (sampled max ${mib(maxRss)}); agents' peak RSS: source ${mib(agentPeaks[0])}, destination ${mib(agentPeaks[1])}`,
  '',
  'route                                 n     p50 ms   p99 ms   max ms',
  ...Object.entries(times).map(([route, t]) => `${route.padEnd(36)} ${String(t.length).padStart(4)}  ${quantile(t, 0.5).toFixed(1).padStart(8)} ${quantile(t, 0.99).toFixed(1).padStart(8)} ${Math.max(...t).toFixed(1).padStart(8)}`),
];
process.stdout.write(`${lines.join('\n')}\n`);
await Promise.all(children.map((c) => new Promise((r) => (c.exitCode !== null ? r() : (c.once('exit', r), c.kill('SIGTERM'))))));
await rm(dir, { recursive: true, force: true });
process.exit(equal === diskCount && progress.cutover.state === 'healthy' ? 0 : 1);
