/**
 * Crash consistency at segment boundaries: for every sealed seq S, the replica with deltas
 * applied up to S equals the source disk as it stood at S.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { join } from 'node:path';
import { initReplica } from '../../src/migrate/index.js';
import { sha256File } from '../support/images.js';
import { RandomWorkload } from '../support/random-workload.js';
import { startTestReplication } from '../support/replication.js';
import { tempDir } from '../support/temp.js';

const MiB = 1024 * 1024;
let dir: { path: string; cleanup: () => Promise<void> };
beforeAll(async () => (dir = await tempDir()));
afterAll(async () => dir.cleanup());

for (const seed of [41, 42, 43]) {
  it(`replica at each sealed seq equals the source at that seq (seed ${seed})`, async () => {
    const base = join(dir.path, `s${seed}`);
    const sizeBytes = 8 * MiB;
    // Seals only when asked, so every seal is a point whose disk state the test knows.
    const { rep, repo, sourcePath } = await startTestReplication(base, {
      sizeBytes,
      seed,
      dataFraction: 0.3,
      replicaPath: `${base}-unused.img`,
      journal: { segmentMaxAgeMs: 0, segmentMaxBytes: 256 * MiB },
    });
    const copy = await rep.baseCopy();
    const replicaPath = `${base}-replica.img`;
    const applier = await initReplica({ repo, diskId: 'disk0', manifestId: copy.manifestId, replicaPath });

    const points: Array<{ lastSeq: number; sha256: string }> = [];
    for (let round = 0; round < 6; round++) {
      // Concurrent writers, all completed before the seal: the seal is a quiet point.
      await new RandomWorkload({ seed: seed * 10 + round, sizeBytes, writers: 3, opsPerWriter: 12, maxIoBytes: MiB }).run(rep.filter);
      const segment = await rep.tracker.seal();
      if (segment) points.push({ lastSeq: segment.lastSeq, sha256: await sha256File(sourcePath) });
    }
    await rep.shipper.shipReady();
    expect(points.length).toBeGreaterThanOrEqual(5);

    for (const point of points) {
      await applier.applyAvailable(undefined, { throughSeq: point.lastSeq });
      expect(applier.nextSeq).toBe(point.lastSeq + 1);
      expect(await sha256File(replicaPath)).toBe(point.sha256);
    }
    await rep.close();
  });
}
