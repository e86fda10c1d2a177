#!/usr/bin/env node
// The soak, run by scripts/soak: DISKS disks under `ferry filter`, an NBD writer (python3-
// libnbd) rewriting random blocks of every disk the whole time, the store an S3 server
// (Ceph's radosgw, started by scripts/radosgw: s3rver, a mock, crashes under a soak's
// concurrent puts and deletes) behind a proxy that answers some requests 503 SlowDown, resets some and stalls
// some, a follower (`ferry replica apply --follow`) per disk, and the filter restarted
// every RESTART minutes, by SIGTERM and SIGKILL in turn (an unclean stop resyncs the
// activity log). At the end the writer stops, every disk is drained and
// its replica checked against it (SHA-256 of both files). Memory (RSS) of the filter and
// the followers is sampled every 10 s and printed per period: it should stay flat.
//
//   node scripts/lib/soak.mjs [--minutes 30] [--disks 8] [--size 64M] [--restart 3]
//       [--faults 0.05]                      (after npm run build; see scripts/soak)
//
// Environment: FERRY_DIST (default ./dist), SOAK_DIR (default /tmp).
import { spawn, spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, request } from 'node:http';
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const root = resolve(fileURLToPath(new URL('.', import.meta.url)), '../..');
const dist = resolve(process.env.FERRY_DIST ?? join(root, 'dist'));
const ferryMain = join(dist, 'cli/main.js');
const { FilterControlClient } = await import(pathToFileURL(join(dist, 'api/index.js')).href);

const usage = 'usage: scripts/soak [--minutes 30] [--disks 8] [--size 64M] [--restart 3] [--faults 0.05]';
const fail = (message) => {
  process.stderr.write(`soak: ${message}\n${usage}\n`);
  process.exit(2);
};
let opts;
try {
  ({ values: opts } = parseArgs({
    options: {
      minutes: { type: 'string', default: '30' },
      disks: { type: 'string', default: '8' },
      size: { type: 'string', default: '64M' },
      restart: { type: 'string', default: '3' },
      faults: { type: 'string', default: '0.05' },
    },
  }));
} catch (err) {
  fail(err.message);
}
for (const name of ['minutes', 'disks', 'restart', 'faults']) {
  const value = Number(opts[name]);
  if (!(value >= 0) || (name !== 'faults' && !(value > 0))) fail(`--${name}: expected a positive number, received ${JSON.stringify(opts[name])}`);
}
const minutes = Number(opts.minutes);
const diskCount = Number(opts.disks);
const faultRate = Number(opts.faults);
const dir = await mkdtemp(join(process.env.SOAK_DIR ?? '/tmp', 'ferry-soak-'));
const children = new Set();
process.on('exit', () => children.forEach((c) => c.kill('SIGKILL')));
const log = (text) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${text}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Starts a process; its stdout is kept in `out`, its stderr appended to `log` (in the work dir) when given. */
function spawnTracked(command, args, log) {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  child.on('exit', () => children.delete(child));
  child.out = '';
  child.stdout.on('data', (d) => (child.out += d));
  if (log) child.stderr.pipe(createWriteStream(join(dir, log), { flags: 'a' }));
  else child.stderr.resume();
  return child;
}

async function printed(child, pattern, what) {
  for (let i = 0; i < 1200 && !pattern.test(child.out); i++) {
    if (child.exitCode !== null) throw new Error(`${what} exited ${child.exitCode}`);
    await sleep(50);
  }
  if (!pattern.test(child.out)) throw new Error(`${what} did not start`);
}

const ferry = (args) =>
  new Promise((resolveRun, reject) => {
    const child = spawnTracked(process.execPath, [ferryMain, ...args]);
    child.on('close', (code) => (code === 0 ? resolveRun(child.out.trim()) : reject(new Error(`ferry ${args.join(' ')} exited ${code}`))));
  });

// The S3 server, and the proxy that misbehaves in front of it.
const rgwPort = await new Promise((r) => {
  const probe = createServer().listen(0, '127.0.0.1', () => {
    const { port } = probe.address();
    probe.close(() => r(port));
  });
});
const rgw = spawnTracked(join(root, 'scripts/radosgw'), ['start', join(dir, 'ceph'), String(rgwPort)], 'radosgw.log');
await printed(rgw, /^secret-key /m, 'radosgw');
const upstream = new URL(/^endpoint (\S+)$/m.exec(rgw.out)[1]);
process.env.AWS_ACCESS_KEY_ID = /^access-key (\S+)$/m.exec(rgw.out)[1];
process.env.AWS_SECRET_ACCESS_KEY = /^secret-key (\S+)$/m.exec(rgw.out)[1];
const { S3Client, CreateBucketCommand } = createRequire(join(root, 'package.json'))('@aws-sdk/client-s3');
const admin = new S3Client({ endpoint: upstream.href, region: 'us-east-1', forcePathStyle: true });
await admin.send(new CreateBucketCommand({ Bucket: 'soak' }));
admin.destroy();
const stopRadosgw = () => spawnSync(join(root, 'scripts/radosgw'), ['stop', join(dir, 'ceph')]);
process.on('exit', stopRadosgw);
const faults = { requests: 0, slowDown: 0, reset: 0, stall: 0 };
const proxy = createServer((req, res) => {
  faults.requests++;
  const x = Math.random();
  if (x < faultRate) {
    faults.slowDown++;
    req.resume();
    req.on('end', () => res.writeHead(503).end('<Error><Code>SlowDown</Code></Error>'));
  } else if (x < 1.5 * faultRate) {
    faults.reset++;
    req.socket.destroy();
  } else if (x < 1.7 * faultRate) {
    faults.stall++;
    req.resume(); // never answered
  } else {
    const forward = request({ host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers }, (reply) => {
      res.writeHead(reply.statusCode ?? 502, reply.headers);
      reply.pipe(res);
    });
    forward.on('error', () => res.destroy());
    req.pipe(forward);
  }
});
await new Promise((r) => proxy.listen(0, '127.0.0.1', r));
const storeArgs = ['--store', 's3://soak/site', '--s3-endpoint', `http://127.0.0.1:${proxy.address().port}`, '--s3-timeout', '2s', '--s3-retry-for', '30m'];

// The disks, the filter, base copies, replicas and their followers.
const images = [];
for (let i = 0; i < diskCount; i++) {
  const image = join(dir, `d${i}.img`);
  await new Promise((r, j) => spawnTracked(process.execPath, [join(root, 'scripts/bench/lib/make-image.mjs'), image, opts.size, '4M', '12M', 'holes']).on('close', (c) => (c === 0 ? r() : j(new Error('make-image')))));
  images.push(image);
}
const control = join(dir, 'state', 'control.sock');
const filterArgs = ['filter', ...images.flatMap((image, i) => ['--disk', `d${i}=${image}`]), '--state-dir', join(dir, 'state'), ...storeArgs];
let filter = spawnTracked(process.execPath, [ferryMain, ...filterArgs], 'filter.log');
await printed(filter, /^control /m, 'ferry filter');
const exports = [...filter.out.matchAll(/^export \S+ (\S+)$/gm)].map((m) => m[1]);
log(`filter serving ${diskCount} disks of ${opts.size}; store behind a proxy failing ${(faultRate * 170).toFixed(1)}% of requests`);

const replicas = images.map((_, i) => join(dir, `d${i}.replica.img`));
const followers = [];
for (let i = 0; i < diskCount; i++) {
  const manifest = await ferry(['base-copy', '--control', control, '--disk', `d${i}`, '-q']);
  await ferry(['replica', 'init', ...storeArgs, '--disk', `d${i}`, '--manifest', manifest, replicas[i], '-q']);
  followers.push(spawnTracked(process.execPath, [ferryMain, 'replica', 'apply', ...storeArgs, replicas[i], '--follow', '--poll-ms', '200', '-q'], `follower-${i}.log`));
}

// The writer: random 4 KiB..256 KiB writes over every disk, a flush now and then, reconnecting
// whenever the filter is restarted; stops when its stop file appears.
const writerPath = join(dir, 'writer.py');
await writeFile(
  writerPath,
  `
import nbd, os, random, sys, time
stop = sys.argv[1] + '.stop'
uris = sys.argv[2:]
handles = [None] * len(uris)
writes = 0
while not os.path.exists(stop):
    for i, uri in enumerate(uris):
        try:
            if handles[i] is None:
                h = nbd.NBD(); h.connect_uri(uri); handles[i] = h
            h = handles[i]
            n = random.choice([4096, 65536, 262144])
            h.pwrite(os.urandom(n), random.randrange(0, (h.get_size() - n) // 4096) * 4096); writes += 1
            if random.random() < 0.02: h.flush()
        except Exception:
            handles[i] = None
            time.sleep(0.2)
    time.sleep(0.01)
for h in handles:
    if h is not None:
        try: h.flush(); h.shutdown()
        except Exception: pass
print(writes)
`,
);
const writer = spawnTracked('/usr/bin/python3', [writerPath, writerPath, ...exports]);

// Memory, sampled.
const rss = async (pid) => Number(/^VmRSS:\s+(\d+) kB/m.exec(await readFile(`/proc/${pid}/status`, 'utf8').catch(() => ''))?.[1] ?? 0) / 1024;
const samples = [];
const sampler = setInterval(async () => {
  const followerRss = await Promise.all(followers.map((f) => rss(f.pid)));
  samples.push({ atMin: (Date.now() - started) / 60_000, filter: await rss(filter.pid), followers: Math.max(...followerRss) });
}, 10_000);

const started = Date.now();
let restarts = 0;
while (Date.now() - started < minutes * 60_000) {
  const next = Math.min(Number(opts.restart) * 60_000, started + minutes * 60_000 - Date.now());
  await sleep(next);
  if (Date.now() - started >= minutes * 60_000) break;
  const signal = restarts % 2 === 0 ? 'SIGTERM' : 'SIGKILL';
  filter.kill(signal);
  await new Promise((r) => filter.on('close', r));
  filter = spawnTracked(process.execPath, [ferryMain, ...filterArgs], 'filter.log');
  await printed(filter, /^control /m, 'ferry filter (restarted)');
  restarts++;
  log(`filter restarted after ${signal} (${restarts}); store requests ${faults.requests}, faults ${faults.slowDown + faults.reset + faults.stall}`);
}
clearInterval(sampler);

// The end: the writer stops, every disk is drained, every replica catches up and is compared.
await writeFile(`${writerPath}.stop`, '');
const writes = await new Promise((r) => writer.on('close', () => r(Number(writer.out.trim()))));
const client = new FilterControlClient(control);
const results = [];
for (let i = 0; i < diskCount; i++) {
  await client.quiesce(`d${i}`, 'soak');
  const { finalSeq } = await client.drain(`d${i}`, 'soak');
  for (;;) {
    const state = JSON.parse(await readFile(`${replicas[i]}.ferry-replica.json`, 'utf8'));
    if (state.nextSeq >= finalSeq && state.resync === undefined) break;
    await sleep(500);
  }
  const [a, b] = await Promise.all([sha256(images[i]), sha256(replicas[i])]);
  results.push(a === b);
  await client.resume(`d${i}`, { owner: 'soak' });
}

async function sha256(path) {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk);
  return hash.digest('hex');
}

const periods = [];
for (let m = 0; m < minutes; m += 5) {
  const window = samples.filter((s) => s.atMin >= m && s.atMin < m + 5);
  if (window.length > 0) periods.push(`  ${String(m).padStart(3)}-${m + 5} min  filter RSS ${Math.min(...window.map((s) => s.filter)).toFixed(0)}..${Math.max(...window.map((s) => s.filter)).toFixed(0)} MiB, followers (max) ${Math.min(...window.map((s) => s.followers)).toFixed(0)}..${Math.max(...window.map((s) => s.followers)).toFixed(0)} MiB`);
}
process.stdout.write(
  [
    `soak: ${minutes} min, ${diskCount} disks of ${opts.size}, ${writes} writes, ${restarts} filter restarts (${Math.floor(restarts / 2)} after SIGKILL)`,
    `store: ${faults.requests} requests, ${faults.slowDown} answered 503 SlowDown, ${faults.reset} reset, ${faults.stall} stalled`,
    `replicas equal to their disks: ${results.filter(Boolean).length}/${diskCount}`,
    'memory:',
    ...periods,
    '',
  ].join('\n'),
);
for (const c of children) c.kill('SIGTERM');
proxy.close();
await sleep(500);
stopRadosgw();
await rm(dir, { recursive: true, force: true });
process.exit(results.every(Boolean) ? 0 : 1);
