import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ChangeTracker, type ModeChange } from '../../src/delta/change-tracker.js';

const K = 1024;
const M = 1024 * K;
let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ferry-tracker-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('ChangeTracker', () => {
  it('a resync needs the records shipped before its fall back; one still owed keeps needing what the first did', async () => {
    const tracker = await ChangeTracker.open({ dir, sizeBytes: 4 * M, journal: { segmentMaxAgeMs: 0 } });
    const ship = async () => {
      await tracker.seal();
      for (const segment of [...tracker.sealedSegments()]) await tracker.release(segment);
    };
    await tracker.record('write', 0, new Uint8Array(4 * K)); // seq 1
    await ship(); // in the store
    await tracker.record('write', 64 * K, new Uint8Array(4 * K)); // seq 2: not shipped
    await tracker.switchToBitmap('overflow');
    expect(tracker.resyncNeedsSeq).toBe(2); // seq 1 is in the store; seq 2 went to the bitmap
    await tracker.startStreaming(); // the resync begins... and is never finished (its shipper replaced)
    await tracker.record('write', 128 * K, new Uint8Array(4 * K));
    await ship(); // a later record shipped meanwhile
    await tracker.switchToBitmap('resync restarted');
    expect(tracker.resyncNeedsSeq).toBe(2); // the blocks of seq 2 are still only in the bitmap
    await tracker.close();
  });


  it('gives each resync a generation above every earlier one, also after a restart with the clock stepped back', async () => {
    let tracker = await ChangeTracker.open({ dir, sizeBytes: 4 * M });
    const first = await tracker.newResyncGeneration();
    const second = await tracker.newResyncGeneration();
    expect(second).toBeGreaterThan(first);
    await tracker.close();
    // The host's clock goes back an hour (NTP, a wrong RTC), and the filter starts again.
    const now = vi.spyOn(Date, 'now').mockReturnValue(first - 3_600_000);
    try {
      tracker = await ChangeTracker.open({ dir, sizeBytes: 4 * M });
      expect(await tracker.newResyncGeneration()).toBeGreaterThan(second);
      await tracker.close();
    } finally {
      now.mockRestore();
    }
  });

  it('journals in streaming mode; currentSeq is the seq of the next record', async () => {
    const tracker = await ChangeTracker.open({ dir, sizeBytes: 4 * M, journal: { segmentMaxAgeMs: 0 } });
    expect(tracker.mode).toBe('streaming');
    expect(tracker.consistent).toBe(true);
    expect(tracker.currentSeq).toBe(1);
    await tracker.record('write', 0, new Uint8Array(4 * K));
    await tracker.record('trim', 64 * K, 8 * K);
    await tracker.record('zero', 0, 0); // empty: not recorded
    expect(tracker.currentSeq).toBe(3);
    expect(tracker.state().dirtyBlocks).toBe(0);
    expect(tracker.state()).toMatchObject({ mode: 'streaming', consistent: true, currentSeq: 3, dirtyBytes: 0 });
    expect(tracker.unshippedJournalBytes).toBeGreaterThan(4 * K);
    await tracker.close();
  });

  it('switching to the bitmap marks every unshipped record, open and sealed, and drops them; startStreaming returns S', async () => {
    const tracker = await ChangeTracker.open({ dir, sizeBytes: 4 * M, journal: { segmentMaxAgeMs: 0 } });
    const modes: ModeChange[] = [];
    const consistency: boolean[] = [];
    tracker.on('mode', (m) => modes.push(m));
    tracker.on('consistent', (c) => consistency.push(c));
    await tracker.record('write', 0, new Uint8Array(K)); // block 0
    await tracker.seal();
    await tracker.record('zero', 3 * 64 * K + 512, 64 * K); // blocks 3-4
    await tracker.switchToBitmap('seed in transit');
    expect(tracker.mode).toBe('bitmap');
    expect(tracker.consistent).toBe(false);
    expect(tracker.sealedSegments()).toEqual([]);
    expect(tracker.unshippedJournalBytes).toBe(0);
    expect([0, 1, 2, 3, 4, 5].map((b) => tracker.isDirty(b))).toEqual([true, false, false, true, true, false]);
    // In bitmap mode writes only mark.
    await tracker.record('write', 10 * 64 * K, new Uint8Array(512));
    expect(tracker.isDirty(10)).toBe(true);
    expect(tracker.currentSeq).toBe(3);
    const S = await tracker.startStreaming();
    expect(S).toBe(3);
    expect(modes.map((m) => [m.mode, m.seq])).toEqual([['bitmap', 3], ['streaming', 3]]);
    await tracker.record('write', 0, new Uint8Array(512));
    expect(tracker.currentSeq).toBe(4);
    expect(tracker.resyncComplete()).toBe(false); // still dirty blocks to ship
    tracker.takeDirtyRuns(4 * M);
    expect(tracker.resyncComplete()).toBe(true);
    expect(consistency).toEqual([false, true]);
    await tracker.close();
  });

  it('falls back when a record would pass the hard limit, and the record itself is marked', async () => {
    const tracker = await ChangeTracker.open({ dir, sizeBytes: 4 * M, journal: { segmentMaxAgeMs: 0, hardLimitBytes: 100 * K } });
    await tracker.record('write', 0, new Uint8Array(64 * K));
    await tracker.record('write', M, new Uint8Array(64 * K)); // would pass 100 KiB
    expect(tracker.mode).toBe('bitmap');
    await tracker.startStreaming();
    expect(tracker.isDirty(0)).toBe(true);
    expect(tracker.isDirty(M / (64 * K))).toBe(true);
    expect(tracker.state().dirtyBlocks).toBe(2);
    await tracker.close();
  });

  it('a clean close keeps mode, flag and bitmap; an unclean stop keeps a resync owed and adds the activity log', async () => {
    let tracker = await ChangeTracker.open({ dir, sizeBytes: 4 * M, mode: 'bitmap', activityExtentBytes: M });
    expect(tracker.consistent).toBe(false); // a fresh bitmap-mode tracker owes a resync
    await write(tracker, 128 * K, 512);
    await tracker.close();
    tracker = await ChangeTracker.open({ dir, sizeBytes: 4 * M, activityExtentBytes: M });
    expect(tracker.mode).toBe('bitmap');
    expect(tracker.state().dirtyBlocks).toBe(1);
    expect(tracker.isDirty(2)).toBe(true);
    await write(tracker, 3 * M, 512);
    // Not closed: as after a crash. The owed block and the activity log's extents are dirty.
    const reopened = await ChangeTracker.open({ dir, sizeBytes: 4 * M, activityExtentBytes: M });
    expect(reopened.mode).toBe('bitmap');
    expect(reopened.consistent).toBe(false);
    expect(dirtyExtents(reopened, M)).toEqual([0, 3]);
    expect(reopened.isDirty(2)).toBe(true);
    await reopened.close();
    await expect(ChangeTracker.open({ dir, sizeBytes: 8 * M })).rejects.toThrow(/tracks a 4194304-byte disk/);
  });

  it('after an unclean stop only the activity log is dirty: extents in flight or unshipped, not those shipped', async () => {
    const tracker = await ChangeTracker.open({ dir, sizeBytes: 64 * M, activityExtentBytes: 4 * M, activityHotExtents: 0, releasedSaveDelayMs: 0, journal: { segmentMaxAgeMs: 0 } });
    await write(tracker, 1 * M, 4 * K); // extent 0: shipped below
    await write(tracker, 5 * M - 4 * K, 8 * K); // extents 1 and 2: shipped below
    const shipped = (await tracker.seal())!;
    await tracker.release(shipped);
    await write(tracker, 10 * M, 4 * K); // extent 2 again: not shipped
    // Extent 2 again, not yet in the store: it stays in the log.
    await write(tracker, 40 * M, 64 * K); // extent 10: not shipped
    await tracker.beginWrite(60 * M, 4 * K); // extent 15: in flight, never recorded
    // Crash: no close.
    const reopened = await ChangeTracker.open({ dir, sizeBytes: 64 * M, activityExtentBytes: 4 * M, activityHotExtents: 0, releasedSaveDelayMs: 0 });
    expect(reopened.mode).toBe('bitmap');
    expect(reopened.consistent).toBe(false);
    expect(dirtyExtents(reopened, 4 * M)).toEqual([2, 10, 15]);
    expect(reopened.dirtyBytes).toBe(12 * M);
    // The resync needs the shipped records (seqs 1 and 2) applied before it, nothing more.
    expect(reopened.resyncNeedsSeq).toBe(3);
    // Streaming again and resynced: extents leave the log as their records ship.
    await reopened.startStreaming();
    reopened.takeDirtyRuns(Number.MAX_SAFE_INTEGER);
    expect(reopened.resyncComplete()).toBe(true);
    await write(reopened, 20 * M, 4 * K);
    await reopened.close();
    const again = await ChangeTracker.open({ dir, sizeBytes: 64 * M, activityExtentBytes: 4 * M, activityHotExtents: 0, releasedSaveDelayMs: 0 });
    expect(again.consistent).toBe(true);
    const crashed = await ChangeTracker.open({ dir, sizeBytes: 64 * M, activityExtentBytes: 4 * M, activityHotExtents: 0, releasedSaveDelayMs: 0 });
    expect(dirtyExtents(crashed, 4 * M)).toEqual([5]); // the unshipped write of the last run
    await crashed.close();
    await again.close().catch(() => {});
  });
});

/** A write as the capture filter makes it: activity log first, then the record. */
async function write(tracker: ChangeTracker, offset: number, length: number): Promise<void> {
  await tracker.beginWrite(offset, length);
  await tracker.record('write', offset, new Uint8Array(length));
  tracker.endWrite(offset, length);
}

/** The extents (of `extentBytes`) with a dirty block. */
function dirtyExtents(tracker: ChangeTracker, extentBytes: number): number[] {
  const blocks = tracker.state().dirtyBlocks;
  const found = new Set<number>();
  for (let b = 0, seen = 0; seen < blocks; b++) {
    if (tracker.isDirty(b)) {
      seen++;
      found.add(Math.floor((b * 64 * K) / extentBytes));
    }
  }
  return [...found].sort((a, b) => a - b);
}
