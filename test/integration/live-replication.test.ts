/**
 * Live replication of one disk, end to end, with randomized concurrent writers running
 * during the base copy and while streaming: after the disk-level cutover the replica is
 * byte-identical to the source. Repeated over seeds, with a journal so small that it
 * overflows into bitmap mode and back, and with the shipper stopped and replaced mid-way.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rename, writeFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { isFerryError } from '../../src/core/index.js';
import type { ModeChange } from '../../src/delta/index.js';
import { sha256File } from '../support/images.js';
import { RandomWorkload } from '../support/random-workload.js';
import { startTestReplication } from '../support/replication.js';
import { tempDir } from '../support/temp.js';

const MiB = 1024 * 1024;
let dir: { path: string; cleanup: () => Promise<void> };
beforeAll(async () => (dir = await tempDir()));
afterAll(async () => dir.cleanup());

interface Scenario {
  seed: number;
  /** Journal hard limit: small values force the fall back to the bitmap. */
  hardLimitBytes?: number;
  /** Replace the shipper with a new one half-way through streaming. */
  replaceShipper?: boolean;
}

async function liveMigration({ seed, hardLimitBytes, replaceShipper }: Scenario) {
  const base = join(dir.path, `seed-${seed}-${hardLimitBytes ?? 0}-${replaceShipper ? 'r' : ''}`);
  const sizeBytes = 24 * MiB;
  const { rep, sourcePath, replicaPath } = await startTestReplication(base, {
    sizeBytes,
    seed,
    journal: { segmentMaxAgeMs: 30, segmentMaxBytes: 2 * MiB, hardLimitBytes: hardLimitBytes ?? 256 * MiB },
    backpressure: { maxDelayMs: hardLimitBytes ? 0 : 20 }, // overflow tests must really overflow
  });
  const modes: string[] = [];
  rep.tracker.on('mode', (change: ModeChange) => modes.push(change.mode));
  const workload = (n: number, ops: number) =>
    new RandomWorkload({ seed: seed * 100 + n, sizeBytes, writers: 4, opsPerWriter: ops, maxIoBytes: 4 * MiB }).run(rep.filter);

  // Writers run while the base copy reads the disk.
  const [copy] = await Promise.all([rep.baseCopy({ concurrency: 4 }), workload(1, 40)]);
  await rep.startReplica(copy.manifestId);

  // And while streaming.
  if (replaceShipper) {
    await workload(2, 30);
    await rep.restartShipper(); // mid-way, whatever it was doing
    await workload(3, 30);
  } else {
    await workload(2, 60);
  }
  const cutover = await rep.cutover({ verify: 'full' });
  const [sourceHash, replicaHash] = [await sha256File(sourcePath), await sha256File(replicaPath)];
  const figures = rep.figures();
  await rep.close();
  return { cutover, sourceHash, replicaHash, modes, figures };
}

describe('live replication of a disk under randomized concurrent writes', () => {
  for (const seed of [1, 2, 3, 4, 5]) {
    it(`replica equals source after cutover (seed ${seed})`, async () => {
      const result = await liveMigration({ seed });
      expect(result.replicaHash).toBe(result.sourceHash);
      expect(result.cutover.finalSeq).toBeGreaterThan(0);
      expect(result.figures.lagSeq).toBe(0);
      expect(result.figures.consistent).toBe(true);
    });
  }

  for (const seed of [11, 12, 13]) {
    it(`overflows into bitmap mode and back, and still converges (seed ${seed})`, async () => {
      const result = await liveMigration({ seed, hardLimitBytes: 3 * MiB });
      expect(result.modes).toContain('bitmap');
      expect(result.modes[result.modes.length - 1]).toBe('streaming');
      expect(result.replicaHash).toBe(result.sourceHash);
    });
  }

  for (const seed of [21, 22]) {
    it(`survives the shipper being stopped and replaced mid-way (seed ${seed})`, async () => {
      const result = await liveMigration({ seed, replaceShipper: true, hardLimitBytes: 4 * MiB });
      expect(result.replicaHash).toBe(result.sourceHash);
    });
  }
});

describe('a cutover that fails', () => {
  it('resumes the source, loses nothing, and a later cutover succeeds', async () => {
    const base = join(dir.path, 'failing');
    const sizeBytes = 16 * MiB;
    const { rep, sourcePath, storeDir, replicaPath } = await startTestReplication(base, { sizeBytes, seed: 31, journal: { segmentMaxAgeMs: 30 } });
    const workload = (n: number) => new RandomWorkload({ seed: 3100 + n, sizeBytes, writers: 3, opsPerWriter: 30 }).run(rep.filter);
    const copy = await rep.baseCopy();
    await rep.startReplica(copy.manifestId);
    await workload(1);

    // The store goes away: its directory is replaced by a file, so every put fails.
    await rep.shipper.stop();
    await rename(storeDir, `${storeDir}.away`);
    await writeFile(storeDir, 'not a directory');
    const err = await rep.cutover({ verify: 'full' }).catch((e: unknown) => e);
    expect(isFerryError(err, 'store-unavailable')).toBe(true);
    expect(rep.filter.quiesced).toBe(false); // the source runs again
    await workload(2); // and takes writes

    await rm(storeDir);
    await rename(`${storeDir}.away`, storeDir);
    rep.shipper.start();
    const result = await rep.cutover({ verify: 'full' });
    expect(result.verified).toBe('full');
    expect(await sha256File(replicaPath)).toBe(await sha256File(sourcePath));
    await rep.close();
  });
});
