/**
 * Replay order at the replica, with deltas made by hand: resync pieces that arrive late,
 * a resync superseded after a source crash, gaps that wait, and pruning of applied deltas.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ReplicaApplier } from '../../src/migrate/index.js';
import { FileStore, Repository, type Delta, type DeltaExtent } from '../../src/store/index.js';
import { tempDir } from '../support/temp.js';

const KiB = 1024;
const sizeBytes = 64 * KiB;
let dir: { path: string; cleanup: () => Promise<void> };
beforeAll(async () => (dir = await tempDir()));
afterAll(async () => dir.cleanup());

/** A write of `fill` bytes over block `block` (4 KiB blocks). */
function put(block: number, fill: number): DeltaExtent {
  return { kind: 'write', offset: block * 4 * KiB, length: 4 * KiB, data: Buffer.alloc(4 * KiB, fill) };
}

function journal(first: number, last: number, extents: DeltaExtent[]): Delta {
  return { kind: 'journal', seq: first, endSeq: last, part: 0, generation: 0, final: false, diskSizeBytes: sizeBytes, createdAtMs: 0, extents };
}

function resync(seq: number, generation: number, part: number, final: boolean, extents: DeltaExtent[], endSeq = seq): Delta {
  return { kind: 'resync', seq, endSeq, part, generation, final, diskSizeBytes: sizeBytes, createdAtMs: 0, extents };
}

let count = 0;
async function setup() {
  const base = join(dir.path, `case-${++count}`);
  const repo = await Repository.openOrInit(new FileStore(`${base}-store`), 16 * KiB);
  // An all-zero base disk with epoch 1.
  const manifestId = await repo.putManifest({
    format: 'ferry-manifest',
    version: 1,
    disk: { name: 'd', sizeBytes },
    chunkSizeBytes: 16 * KiB,
    epoch: 1,
    createdAt: new Date().toISOString(),
    chunks: [],
  });
  const replicaPath = `${base}-replica.img`;
  const applier = await ReplicaApplier.create({ repo, diskId: 'd', manifestId, replicaPath });
  const block = async (i: number) => (await readFile(replicaPath))[i * 4 * KiB];
  return { repo, applier, block };
}

describe('replica applier replay order', () => {
  it('applies journal deltas in seq order and waits at a gap', async () => {
    const { repo, applier, block } = await setup();
    await repo.putDelta('d', journal(1, 3, [put(0, 1)]));
    await repo.putDelta('d', journal(7, 9, [put(0, 7)])); // 4..6 missing: a gap
    expect(await applier.applyAvailable()).toEqual({ applied: 1, waiting: true });
    expect(await block(0)).toBe(1);
    await repo.putDelta('d', journal(4, 6, [put(0, 4), put(1, 4)]));
    await applier.applyAvailable();
    expect(applier.nextSeq).toBe(10);
    expect([await block(0), await block(1)]).toEqual([7, 4]);
  });

  it('applies a resync piece that arrives together with the next resync before that one', async () => {
    const { repo, applier, block } = await setup();
    await repo.putDelta('d', resync(8, 100, 0, false, [put(0, 80)]));
    await applier.applyAvailable();
    // The source finishes resync 8 and, after another fall back, starts resync 20.
    await repo.putDelta('d', resync(8, 100, 1, true, [put(1, 81)], 8));
    await repo.putDelta('d', resync(20, 200, 0, true, [put(0, 20)], 20));
    await applier.applyAvailable();
    expect([await block(0), await block(1)]).toEqual([20, 81]);
    expect(applier.nextSeq).toBe(20);
    expect(applier.consistent).toBe(true);
  });

  it('supersedes a resync whose source crashed, replaying the journal that followed it', async () => {
    const { repo, applier, block } = await setup();
    await repo.putDelta('d', resync(8, 100, 0, false, [put(0, 80)]));
    await repo.putDelta('d', journal(8, 12, [put(2, 12)]));
    await applier.applyAvailable();
    expect(applier.consistent).toBe(false); // resync 8 is under way
    // The source crashed; on restart everything is dirty and a new resync begins at 13.
    await repo.putDelta('d', resync(13, 300, 0, true, [put(0, 130), put(1, 131)], 13));
    await repo.putDelta('d', journal(13, 15, [put(1, 15)]));
    await applier.applyAvailable();
    expect([await block(0), await block(1), await block(2)]).toEqual([130, 15, 12]);
    expect(applier.nextSeq).toBe(16);
    expect(applier.consistent).toBe(true);
  });

  it('orders two resyncs at the same seq by generation', async () => {
    const { repo, applier, block } = await setup();
    await repo.putDelta('d', resync(5, 2, 0, true, [put(0, 52)], 5));
    await repo.putDelta('d', resync(5, 1, 0, true, [put(0, 51), put(1, 51)], 5));
    await applier.applyAvailable();
    expect([await block(0), await block(1)]).toEqual([52, 51]);
  });

  it('deletes applied deltas from the store, and keeps them when told to', async () => {
    const { repo, applier } = await setup();
    await repo.putDelta('d', journal(1, 2, [put(0, 1)]));
    await applier.applyAvailable();
    await applier.applyAvailable(); // the applied delta is now skipped, and pruned
    expect(await repo.listDeltas('d')).toEqual([]);
    applier.prune = false;
    await repo.putDelta('d', journal(3, 4, [put(0, 3)]));
    await applier.applyAvailable();
    await applier.applyAvailable();
    expect((await repo.listDeltas('d')).length).toBe(1);
  });

  it('refuses a corrupt delta, naming it, and applies nothing of it', async () => {
    const { repo, applier, block } = await setup();
    const { key } = await repo.putDelta('d', journal(1, 2, [put(0, 9)]));
    const bytes = await repo.store.get(key);
    bytes.writeUInt8(bytes.readUInt8(100) ^ 1, 100);
    await repo.store.put(key, bytes);
    await expect(applier.applyAvailable()).rejects.toThrow(new RegExp(`delta ${key} is corrupt`));
    expect(await block(0)).toBe(0);
    expect(applier.nextSeq).toBe(1);
  });
});
