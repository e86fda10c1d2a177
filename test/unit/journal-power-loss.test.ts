/**
 * Power loss on the journal: a sealed segment renamed but not yet synced may be empty or torn
 * when the host comes back. The filter must still start (not refuse), resync what the lost
 * records may have touched (the activity log's extents, as after any unclean stop), and never give out
 * the lost segment's seqs again (they may be in the store already). The cut point is drawn
 * from a seed, printed in the test's name.
 */
import { cp, mkdtemp, readdir, rm, stat, truncate } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { ChangeTracker } from '../../src/delta/change-tracker.js';
import { createPrng } from '../support/random-workload.js';

const K = 1024;
const M = 1024 * K;
let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ferry-power-loss-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

for (const seed of [1, 2, 3, 4]) {
  it(`starts after a sealed segment was cut short by a power loss, resyncs, and never reuses its seqs (seed ${seed})`, async () => {
    const live = join(dir, 'live');
    // Memory for a quarter of the records: the rest are written to the segment's file, which
    // sealing renames without syncing.
    const tracker = await ChangeTracker.open({ dir: live, sizeBytes: 8 * M, activityExtentBytes: 512 * K, journal: { segmentMaxAgeMs: 20, maxMemoryBytes: 64 * K } });
    const sealed = new Promise<void>((resolve) => tracker.once('sealed', () => resolve()));
    for (let i = 0; i < 16; i++) {
      // As the capture filter writes: the activity log first, then the record.
      await tracker.beginWrite(i * 64 * K, 16 * K);
      await tracker.record('write', i * 64 * K, new Uint8Array(16 * K).fill(i + 1));
      tracker.endWrite(i * 64 * K, 16 * K);
    }
    await sealed;
    const lastSeq = tracker.currentSeq - 1;

    // The power goes: what is on disk now is what the host finds (the tracker never closed).
    const after = join(dir, 'after');
    await cp(live, after, { recursive: true });
    await tracker.close();
    const journal = join(after, 'journal');
    const name = (await readdir(journal)).find((n) => n.startsWith('sealed-'))!;
    expect(name).toBeDefined();
    const size = (await stat(join(journal, name))).size;
    // Seed 1: an empty file (renamed, nothing of it reached the disk); the others: torn at random.
    await truncate(join(journal, name), seed === 1 ? 0 : Math.floor(createPrng(seed)() * size));

    const reopened = await ChangeTracker.open({ dir: after, sizeBytes: 8 * M, activityExtentBytes: 512 * K });
    try {
      // The two extents the writes went to, where every lost record lies; not the whole disk.
      expect(reopened.state()).toMatchObject({ mode: 'bitmap', consistent: false, dirtyBytes: 1 * M });
      expect(reopened.currentSeq).toBeGreaterThan(lastSeq);
    } finally {
      await reopened.close();
    }
  });
}
