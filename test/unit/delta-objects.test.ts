/**
 * Reading a delta into a reused shared buffer and verifying it on a hash worker: what
 * fits is read in place, what does not gets a buffer of its own, and a damaged delta is
 * refused either way, whichever thread hashed it.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ChunkHasher, newReplicationId } from '../../src/core/index.js';
import { getDelta, putDelta, parseDeltaKey, type Delta } from '../../src/delta/index.js';
import { FileStore, Repository } from '../../src/store/index.js';
import { createPrng, fillRandom } from '../support/random-workload.js';
import { tempDir } from '../support/temp.js';

const MiB = 1024 * 1024;
const seed = Number(process.env.FERRY_TEST_SEED ?? 7);
let dir: { path: string; cleanup: () => Promise<void> };
let hasher: ChunkHasher;
beforeAll(async () => {
  dir = await tempDir();
  hasher = new ChunkHasher();
});
afterAll(async () => {
  await hasher.close();
  await dir.cleanup();
});

function delta(seq: number, bytes: number): Delta {
  const data = Buffer.alloc(bytes);
  fillRandom(data, createPrng(seed + seq));
  return {
    kind: 'journal',
    replication: newReplicationId(),
    seq,
    endSeq: seq,
    part: 0,
    generation: 0,
    final: false,
    diskSizeBytes: 64 * MiB,
    createdAtMs: 0,
    extents: [{ kind: 'write', offset: 0, length: bytes, data }],
  };
}

it(`reads deltas into a shared buffer or one of their own, hashed on the worker or here (seed ${seed})`, async () => {
  const repo = await Repository.openOrInit(new FileStore(`${dir.path}/store`), MiB);
  const into = Buffer.from(new SharedArrayBuffer(4 * MiB));
  for (const [seq, bytes] of [[1, 64 * 1024], [2, 2 * MiB], [3, 6 * MiB]] as const) {
    const made = delta(seq, bytes);
    const { key } = await putDelta(repo, 'd', made);
    const got = await getDelta(repo, parseDeltaKey(key)!, undefined, { into, hasher });
    const data = got.extents[0]!.data!;
    expect(Buffer.from(data).equals(Buffer.from(made.extents[0]!.data!))).toBe(true);
    expect(data.buffer === into.buffer).toBe(bytes <= into.byteLength); // in place when it fits
  }
});

it('refuses a damaged delta, large or small, read into a shared buffer or not', async () => {
  const repo = await Repository.openOrInit(new FileStore(`${dir.path}/store-damaged`), MiB);
  const into = Buffer.from(new SharedArrayBuffer(4 * MiB));
  for (const [seq, bytes] of [[1, 64 * 1024], [2, 2 * MiB], [3, 6 * MiB]] as const) {
    const { key } = await putDelta(repo, 'd', delta(seq, bytes));
    const stored = await repo.store.get(key);
    stored[stored.byteLength >> 1]! ^= 1;
    await repo.store.put(key, stored);
    await expect(getDelta(repo, parseDeltaKey(key)!, undefined, { into, hasher })).rejects.toThrow(new RegExp(`delta ${key} is corrupt: SHA-256 mismatch`));
  }
});
