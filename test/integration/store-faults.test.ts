/**
 * An S3 store that misbehaves (a fault-injecting proxy in front of s3rver): 503 SlowDown,
 * connections reset, requests stalled after their headers. Copies and restores ride
 * through it and end byte-exact; a stalled request fails at its deadline instead of
 * hanging; a store that keeps failing ends the command once the retry time is up, saying
 * what failed. Each fault plan's seed is in the test's name.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { FileDevice } from '../../src/core/index.js';
import { copyDisk, restoreDisk } from '../../src/migrate/index.js';
import { openStore, Repository, type ObjectStore, type S3Settings } from '../../src/store/index.js';
import { startFaultProxy, type FaultProxy } from '../support/fault-proxy.js';
import { makeSparseImage, sha256File } from '../support/images.js';
import { RandomWorkload } from '../support/random-workload.js';
import { startTestReplication } from '../support/replication.js';
import { startS3Server, type S3TestServer } from '../support/s3-server.js';
import { tempDir } from '../support/temp.js';

const MiB = 1024 * 1024;
let dir: Awaited<ReturnType<typeof tempDir>>;
let s3: S3TestServer;
const proxies: FaultProxy[] = [];
const stores: ObjectStore[] = [];

beforeAll(async () => {
  dir = await tempDir('store-faults-');
  s3 = await startS3Server('faults');
});
afterAll(async () => {
  for (const store of stores) await store.close();
  for (const proxy of proxies) await proxy.stop();
  await s3?.stop();
  await dir?.cleanup();
});

/** A store of `prefix` in the S3 server, reached through `proxy`. */
function storeVia(proxy: FaultProxy, prefix: string, settings: Partial<S3Settings> = {}): ObjectStore {
  const store = openStore(`s3://${s3.bucket}/${prefix}`, { endpoint: proxy.endpoint, accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey, ...settings });
  stores.push(store);
  return store;
}

async function proxy(seed: number, plan: Parameters<typeof startFaultProxy>[1]): Promise<FaultProxy> {
  const p = await startFaultProxy(s3.endpoint, plan, seed);
  proxies.push(p);
  return p;
}

for (const seed of [7, 8]) {
  it(`copies and restores through 503s, resets and stalls, byte-exact (seed ${seed})`, async () => {
    const faults = await proxy(seed, { slowDown: 0.15, reset: 0.05, stall: 0.05 });
    let retries = 0;
    const store = storeVia(faults, `exact-${seed}`, { timeoutMs: 1000, retry: { retryForMs: 120_000, onRetry: () => retries++ } });
    const source = join(dir.path, `source-${seed}.img`);
    await makeSparseImage(source, 24 * MiB, seed, 0.7);
    const repo = await Repository.openOrInit(store, MiB);
    const disk = await FileDevice.open(source, { readOnly: true });
    const copy = await copyDisk({ repo, disk, diskName: 'd0', concurrency: 4 }).finally(() => disk.close());
    const restored = join(dir.path, `restored-${seed}.img`);
    await restoreDisk({ repo, manifestId: copy.manifestId, destPath: restored, concurrency: 4 });
    expect(await sha256File(restored)).toBe(await sha256File(source));
    // The faults did happen, and were ridden through.
    expect(faults.counts.slowDown).toBeGreaterThan(0);
    expect(faults.counts.reset).toBeGreaterThan(0);
    expect(faults.counts.stall).toBeGreaterThan(0);
    expect(retries).toBeGreaterThanOrEqual(faults.counts.stall);
  });
}

it('a disk replicated live through the faulty, slow store, under randomized concurrent writers, cuts over byte-exact (seed 9)', async () => {
  // Every request that passes waits 20 ms more, as over a long link.
  const faults = await proxy(9, { slowDown: 0.1, reset: 0.05, stall: 0.05, latencyMs: 20 });
  const store = storeVia(faults, 'live', { timeoutMs: 1000, retry: { retryForMs: 120_000 } });
  const sizeBytes = 16 * MiB;
  const { rep, sourcePath, replicaPath } = await startTestReplication(join(dir.path, 'live'), {
    sizeBytes,
    seed: 9,
    repo: await Repository.openOrInit(store, MiB),
    journal: { segmentMaxAgeMs: 30, segmentMaxBytes: MiB },
  });
  try {
    const workload = (n: number) => new RandomWorkload({ seed: 900 + n, sizeBytes, writers: 4, opsPerWriter: 30, maxIoBytes: MiB }).run(rep.filter);
    const [copy] = await Promise.all([rep.baseCopy({ concurrency: 4 }), workload(1)]);
    await rep.startReplica(copy.manifestId);
    await workload(2);
    await rep.cutover({ verify: 'full' });
    expect(await sha256File(replicaPath)).toBe(await sha256File(sourcePath));
    expect(faults.counts.slowDown + faults.counts.reset + faults.counts.stall).toBeGreaterThan(0);
  } finally {
    await rep.close();
  }
});

it('a stalled request fails at its deadline, not never: no reply within it, said so', async () => {
  const stalls = await proxy(11, { stall: 1 });
  const store = storeVia(stalls, 'stalled', { timeoutMs: 300, retry: { retryForMs: 0 } });
  await expect(store.get('chunks/nothing')).rejects.toMatchObject({ code: 'store-unavailable', message: expect.stringMatching(/no reply within its deadline/) });
  await expect(store.put('chunks/x', Buffer.alloc(1000))).rejects.toMatchObject({ code: 'store-unavailable', message: expect.stringMatching(/no reply within its deadline/) });
});

it('requests given up at their deadline give their connections back: more stalls than the client has sockets, then the store serves again', async () => {
  const stalls = await proxy(12, { stall: 1 });
  const store = storeVia(stalls, 'stalled-many', { timeoutMs: 300, retry: { retryForMs: 0 } });
  // More of each than the SDK's pool of 50 sockets, all stalled, in two waves.
  for (const send of [(i: number) => store.put(`chunks/s${i}`, Buffer.alloc(1000)), () => store.get('chunks/nothing')]) {
    const given = await Promise.allSettled(Array.from({ length: 60 }, (_, i) => send(i)));
    expect(given.every((r) => r.status === 'rejected')).toBe(true);
  }
  stalls.setPlan({});
  await store.put('chunks/after', Buffer.from('served'));
  expect((await store.get('chunks/after')).toString()).toBe('served');
});

it('a store that keeps failing ends the work once the retry time is up, naming the failure and the attempts', async () => {
  const down = await proxy(12, { slowDown: 1 });
  let retries = 0;
  const store = storeVia(down, 'down', { timeoutMs: 1000, retry: { retryForMs: 1500, onRetry: () => retries++ } });
  const failure = await store.put('chunks/y', Buffer.alloc(10)).catch((err: unknown) => err);
  expect(failure).toMatchObject({ code: 'store-unavailable', message: expect.stringMatching(/HTTP 503 SlowDown.*gave up after \d+ attempts/) });
  expect(retries).toBeGreaterThan(0);

  // Back up: the same store goes on.
  down.setPlan({});
  await store.put('chunks/y', Buffer.from('back'));
  expect((await store.get('chunks/y')).toString()).toBe('back');
});
