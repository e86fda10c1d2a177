/**
 * Replay order at the replica, with deltas made by hand: resync pieces that arrive late,
 * a resync superseded after a source crash, gaps that wait, and pruning of applied deltas;
 * and replication identity: another replication's deltas are never applied, a cutover mark
 * ends replay, and one applier at a time holds a replica.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { newReplicationId } from '../../src/core/index.js';
import { ReplicaApplier, listDeltas, putDelta, type Delta, type DeltaExtent } from '../../src/delta/index.js';
import { initReplica } from '../../src/migrate/index.js';
import { FileStore, Repository } from '../../src/store/index.js';
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

/** The replication every case's base belongs to. */
const replication = newReplicationId();

function journal(first: number, last: number, extents: DeltaExtent[], of = replication): Delta {
  return { kind: 'journal', replication: of, seq: first, endSeq: last, part: 0, generation: 0, final: false, diskSizeBytes: sizeBytes, createdAtMs: 0, extents };
}

function resync(seq: number, generation: number, part: number, final: boolean, extents: DeltaExtent[], endSeq = seq): Delta {
  return { kind: 'resync', replication, seq, endSeq, part, generation, final, diskSizeBytes: sizeBytes, createdAtMs: 0, extents };
}

let count = 0;
async function setup() {
  const base = join(dir.path, `case-${++count}`);
  const repo = await Repository.openOrInit(new FileStore(`${base}-store`), 16 * KiB);
  // An all-zero base disk with epoch 1.
  const manifestId = await repo.putManifest({
    format: 'ferry-manifest',
    version: 2,
    disk: { name: 'd', sizeBytes },
    chunkSizeBytes: 16 * KiB,
    epoch: 1,
    replication,
    createdAt: new Date().toISOString(),
    chunks: [],
  });
  const replicaPath = `${base}-replica.img`;
  const applier = await initReplica({ repo, diskId: 'd', manifestId, replicaPath });
  opened.push(applier);
  const block = async (i: number) => (await readFile(replicaPath))[i * 4 * KiB];
  const listed = async () => (await listDeltas(repo, 'd', replication)).deltas;
  return { repo, applier, block, listed, replicaPath };
}

afterEach(async () => {
  for (const applier of opened.splice(0)) await applier.close();
});
const opened: ReplicaApplier[] = [];

describe('replica applier replay order', () => {
  it('applies journal deltas in seq order and waits at a gap', async () => {
    const { repo, applier, block } = await setup();
    await putDelta(repo, 'd', journal(1, 3, [put(0, 1)]));
    await putDelta(repo, 'd', journal(7, 9, [put(0, 7)])); // 4..6 missing: a gap
    expect(await applier.applyAvailable()).toEqual({ applied: 1, waiting: true, cutOver: false });
    expect(await block(0)).toBe(1);
    await putDelta(repo, 'd', journal(4, 6, [put(0, 4), put(1, 4)]));
    await applier.applyAvailable();
    expect(applier.nextSeq).toBe(10);
    expect([await block(0), await block(1)]).toEqual([7, 4]);
  });

  it('waits with a resync whose journal records before it are not listed yet (a lagging listing), then applies both in order', async () => {
    const { repo, applier, block } = await setup();
    await putDelta(repo, 'd', journal(1, 3, [put(0, 1)]));
    // Shipped before the fall back, but not in the listing yet: seqs 4..6 wrote block 1.
    const lagging = journal(4, 6, [put(1, 4)]);
    // The resync after the fall back (journal from 7) carries only the blocks dirty since then.
    await putDelta(repo, 'd', { ...resync(7, 1, 0, true, [put(2, 9)]), needsSeq: 4 + 3 });
    expect(await applier.applyAvailable()).toEqual({ applied: 1, waiting: true, cutOver: false });
    expect([await block(1), await block(2)]).toEqual([0, 0]); // nothing jumped over
    await putDelta(repo, 'd', lagging);
    await applier.applyAvailable();
    expect([await block(0), await block(1), await block(2)]).toEqual([1, 4, 9]);
    expect(applier.snapshot()).toMatchObject({ nextSeq: 7, lastResync: { seq: 7, generation: 1 } });
  });

  it('applies a resync piece that arrives together with the next resync before that one', async () => {
    const { repo, applier, block } = await setup();
    await putDelta(repo, 'd', resync(8, 100, 0, false, [put(0, 80)]));
    await applier.applyAvailable();
    // The source finishes resync 8 and, after another fall back, starts resync 20.
    await putDelta(repo, 'd', resync(8, 100, 1, true, [put(1, 81)], 8));
    await putDelta(repo, 'd', resync(20, 200, 0, true, [put(0, 20)], 20));
    await applier.applyAvailable();
    expect([await block(0), await block(1)]).toEqual([20, 81]);
    expect(applier.nextSeq).toBe(20);
    expect(applier.consistent).toBe(true);
  });

  it('supersedes a resync whose source crashed, replaying the journal that followed it', async () => {
    const { repo, applier, block } = await setup();
    await putDelta(repo, 'd', resync(8, 100, 0, false, [put(0, 80)]));
    await putDelta(repo, 'd', journal(8, 12, [put(2, 12)]));
    await applier.applyAvailable();
    expect(applier.consistent).toBe(false); // resync 8 is under way
    // The source crashed; on restart everything is dirty and a new resync begins at 13.
    await putDelta(repo, 'd', resync(13, 300, 0, true, [put(0, 130), put(1, 131)], 13));
    await putDelta(repo, 'd', journal(13, 15, [put(1, 15)]));
    await applier.applyAvailable();
    expect([await block(0), await block(1), await block(2)]).toEqual([130, 15, 12]);
    expect(applier.nextSeq).toBe(16);
    expect(applier.consistent).toBe(true);
  });

  it('orders two resyncs at the same seq by generation', async () => {
    const { repo, applier, block } = await setup();
    await putDelta(repo, 'd', resync(5, 2, 0, true, [put(0, 52)], 5));
    await putDelta(repo, 'd', resync(5, 1, 0, true, [put(0, 51), put(1, 51)], 5));
    await applier.applyAvailable();
    expect([await block(0), await block(1)]).toEqual([52, 51]);
  });

  it('deletes applied deltas from the store, and keeps them when told to', async () => {
    const { repo, applier, listed } = await setup();
    await putDelta(repo, 'd', journal(1, 2, [put(0, 1)]));
    await applier.applyAvailable();
    await applier.applyAvailable(); // the applied delta is now skipped, and pruned
    expect(await listed()).toEqual([]);
    applier.prune = false;
    await putDelta(repo, 'd', journal(3, 4, [put(0, 3)]));
    await applier.applyAvailable();
    await applier.applyAvailable();
    expect((await listed()).length).toBe(1);
  });

  it('refuses a corrupt delta, naming it, and applies nothing of it', async () => {
    const { repo, applier, block } = await setup();
    const { key } = await putDelta(repo, 'd', journal(1, 2, [put(0, 9)]));
    const bytes = await repo.store.get(key);
    bytes.writeUInt8(bytes.readUInt8(100) ^ 1, 100);
    await repo.store.put(key, bytes);
    await expect(applier.applyAvailable()).rejects.toThrow(new RegExp(`delta ${key} is corrupt`));
    expect(await block(0)).toBe(0);
    expect(applier.nextSeq).toBe(1);
  });

  it('commits every delta before a corrupt one met later in a pass, read ahead or not, across commit groups', async () => {
    const { repo, applier, block, replicaPath } = await setup();
    const corruptSeq = 280; // past the first group of 256
    for (let seq = 1; seq <= 300; seq++) {
      const { key } = await putDelta(repo, 'd', journal(seq, seq, [put(seq % 16, seq & 0xff)]));
      if (seq === corruptSeq) {
        const bytes = await repo.store.get(key);
        bytes.writeUInt8(bytes.readUInt8(100) ^ 1, 100);
        await repo.store.put(key, bytes);
      }
    }
    await expect(applier.applyAvailable()).rejects.toThrow(/is corrupt/);
    const saved = JSON.parse(await readFile(ReplicaApplier.statePath(replicaPath), 'utf8')) as { nextSeq: number; deltasApplied: number };
    expect(saved.nextSeq).toBe(corruptSeq);
    expect(saved.deltasApplied).toBe(corruptSeq - 1);
    for (let b = 0; b < 16; b++) {
      const lastSeq = Math.max(...Array.from({ length: corruptSeq - 1 }, (_, i) => i + 1).filter((seq) => seq % 16 === b));
      expect(await block(b)).toBe(lastSeq & 0xff);
    }
  });
});

describe('replication identity at the replica', () => {
  it("never applies another replication's deltas of the same disk, even where their seqs fit", async () => {
    const { repo, applier, block } = await setup();
    const other = newReplicationId();
    // An earlier migration of disk d left deltas whose seqs lie right where replay goes next.
    await putDelta(repo, 'd', journal(1, 5, [put(0, 0xee), put(2, 0xee)], other));
    await putDelta(repo, 'd', journal(1, 3, [put(0, 1)]));
    await applier.applyAvailable();
    expect(applier.nextSeq).toBe(4);
    expect([await block(0), await block(2)]).toEqual([1, 0]);
    // Its deltas stay where they were: not this applier's to apply, nor to prune.
    expect((await listDeltas(repo, 'd', other)).deltas.length).toBe(1);
  });

  it('refuses a delta whose header names another replication than its key', async () => {
    const { repo, applier, block } = await setup();
    const { key } = await putDelta(repo, 'd', journal(1, 3, [put(0, 0xee)], newReplicationId()));
    // Copied under this replication's prefix: the name fits, the header does not.
    const copy = key.replace(/deltas\/d\/[0-9a-f]{32}\//, `deltas/d/${replication}/`);
    await repo.store.put(copy, await repo.store.get(key));
    await expect(applier.applyAvailable()).rejects.toMatchObject({ code: 'checksum-mismatch', message: expect.stringContaining(`delta ${copy} is corrupt`) });
    expect(await block(0)).toBe(0);
  });

  it('stops at the final seq of a replication marked cut over, and follows it no more', async () => {
    const { repo, applier, block, listed } = await setup();
    await putDelta(repo, 'd', journal(1, 3, [put(0, 1)]));
    await repo.putCutoverMark({ disk: 'd', replication, finalSeq: 4, at: new Date().toISOString(), verified: 'deltas' });
    // A delta past the final seq can only come from a source that ran after its fence.
    await putDelta(repo, 'd', journal(4, 6, [put(0, 0xee)]));
    expect(await applier.applyAvailable()).toEqual({ applied: 1, waiting: false, cutOver: true });
    expect(await block(0)).toBe(1);
    expect(applier.snapshot().cutover?.finalSeq).toBe(4);
    expect(await applier.follow({ pollMs: 10 })).toBe(true);
    expect(await block(0)).toBe(1);
    expect((await listed()).map((n) => n.seq)).toContain(4);
  });

  it('commits a cutover: marks the store, records it, deletes the applied deltas', async () => {
    const { repo, applier, listed } = await setup();
    await putDelta(repo, 'd', journal(1, 3, [put(0, 1)]));
    await applier.applyUntil(4);
    await applier.commitCutover(4, 'full');
    expect(await listed()).toEqual([]);
    expect(await repo.getCutoverMark('d', replication)).toMatchObject({ finalSeq: 4, verified: 'full', replication });
    expect(applier.cutOver).toBe(true);
  });

  it('lets one applier hold a replica: a second is refused, naming the first', async () => {
    const { repo, replicaPath } = await setup();
    await expect(ReplicaApplier.open(repo, replicaPath)).rejects.toMatchObject({
      code: 'conflict',
      message: expect.stringMatching(new RegExp(`replica ${replicaPath} is in use by pid ${process.pid} \\(ferry replica applier\\)`)),
    });
  });

  it('refuses a replica state from before replication identity, saying what to do', async () => {
    const { replicaPath, repo } = await setup();
    const path = ReplicaApplier.statePath(replicaPath);
    const state = JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>;
    delete state.replication;
    await writeFile(path, JSON.stringify({ ...state, version: 1 }));
    await opened.pop()!.close();
    await expect(ReplicaApplier.open(repo, replicaPath)).rejects.toMatchObject({ code: 'unsupported-version', message: expect.stringContaining("'ferry replica init'") });
  });
});
