import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileDevice, isFerryError } from '../../src/core/index.js';
import { Backpressure } from '../../src/delta/backpressure.js';
import { CaptureFilter } from '../../src/delta/capture-filter.js';
import { ChangeTracker } from '../../src/delta/change-tracker.js';

const K = 1024;
const M = 1024 * K;
let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ferry-backpressure-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('Backpressure', () => {
  it('delays in proportion to how far above the high-water mark the journal is, up to the max', () => {
    const source = { unshippedBytes: 0, hardLimitBytes: 10 * M };
    const bp = new Backpressure(source, { highWaterBytes: 2 * M, maxDelayMs: 100 });
    expect(bp.currentDelayMs).toBe(0);
    source.unshippedBytes = 2 * M;
    expect(bp.currentDelayMs).toBe(0);
    source.unshippedBytes = 4 * M; // a quarter of the way from 2 to 10 MiB
    expect(bp.currentDelayMs).toBeCloseTo(25);
    source.unshippedBytes = 10 * M;
    expect(bp.currentDelayMs).toBe(100);
    source.unshippedBytes = 50 * M;
    expect(bp.currentDelayMs).toBe(100);
  });

  it('changes settings at run time, sets the hard limit on its source, and rejects bad ones', () => {
    const source = { unshippedBytes: 6 * M, hardLimitBytes: 10 * M };
    const bp = new Backpressure(source, { highWaterBytes: 2 * M, maxDelayMs: 100 });
    bp.update({ maxDelayMs: 40, hardLimitBytes: 18 * M });
    expect(source.hardLimitBytes).toBe(18 * M);
    expect(bp.settings).toEqual({ highWaterBytes: 2 * M, hardLimitBytes: 18 * M, maxDelayMs: 40 });
    expect(bp.currentDelayMs).toBeCloseTo(10);
    let error: unknown;
    try {
      bp.update({ highWaterBytes: 20 * M });
    } catch (err) {
      error = err;
    }
    expect(isFerryError(error, 'bad-input')).toBe(true);
    expect((error as Error).message).toMatch(/highWaterBytes/);
    expect(bp.settings.highWaterBytes).toBe(2 * M); // unchanged after a rejected update
  });

  it('the capture filter holds acknowledgements by the current delay, and not below the mark', async () => {
    const disk = await FileDevice.open(join(dir, 'disk.img'), { createSizeBytes: 8 * M });
    const tracker = await ChangeTracker.open({ dir: join(dir, 'tracker'), sizeBytes: disk.sizeBytes, journal: { segmentMaxAgeMs: 0, hardLimitBytes: 4 * M } });
    const bp = new Backpressure(tracker, { highWaterBytes: 1 * M, maxDelayMs: 200 });
    const filter = new CaptureFilter(disk, tracker, { backpressure: bp });
    await filter.write(new Uint8Array(512 * K), 0);
    expect(bp.currentDelayMs).toBe(0); // below the mark: acknowledged without a delay (not timed: CI may be slow)
    await filter.write(new Uint8Array(2 * M), M); // now about 2.5 MiB unshipped: half-way
    expect(bp.currentDelayMs).toBeGreaterThan(90);
    const expected = bp.currentDelayMs;
    const started = performance.now();
    await filter.write(new Uint8Array(512), 0);
    expect(performance.now() - started).toBeGreaterThanOrEqual(expected - 5);
    await tracker.close();
    await filter.close();
  });

  it('slows a fast writer to the drain rate: the journal stays under its hard limit, no fall back', async () => {
    const disk = await FileDevice.open(join(dir, 'disk.img'), { createSizeBytes: 32 * M });
    const tracker = await ChangeTracker.open({
      dir: join(dir, 'tracker'),
      sizeBytes: disk.sizeBytes,
      journal: { segmentMaxAgeMs: 20, segmentMaxBytes: 512 * K, hardLimitBytes: 6 * M },
    });
    const bp = new Backpressure(tracker, { highWaterBytes: 1 * M, maxDelayMs: 250 });
    const filter = new CaptureFilter(disk, tracker, { backpressure: bp });
    // The "link": ships (releases) sealed segments at about 4 MB/s.
    let running = true;
    let maxUnshipped = 0;
    const drain = (async () => {
      while (running) {
        const [segment] = tracker.sealedSegments();
        if (segment) {
          await new Promise((resolve) => setTimeout(resolve, (segment.sizeBytes / 4e6) * 1000));
          await tracker.release(segment);
        } else {
          await new Promise((resolve) => setTimeout(resolve, 5));
        }
      }
    })();
    // The "VM": four writers, 64 KiB writes, as fast as acknowledgements allow, for 1.5 s.
    const until = performance.now() + 1500;
    let written = 0;
    await Promise.all(
      Array.from({ length: 4 }, async (_, w) => {
        const data = new Uint8Array(64 * K).fill(w + 1);
        for (let i = 0; performance.now() < until; i++) {
          await filter.write(data, ((w * 97 + i * 13) % 500) * 64 * K);
          written += data.length;
          maxUnshipped = Math.max(maxUnshipped, tracker.unshippedBytes);
        }
      }),
    );
    running = false;
    await drain;
    expect(written).toBeGreaterThan(2 * M);
    expect(tracker.mode).toBe('streaming');
    expect(maxUnshipped).toBeLessThan(6 * M);
    await tracker.close();
    await filter.close();
  }, 30_000);
});
