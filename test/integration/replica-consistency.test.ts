/**
 * A base copy of a disk in use is read over time, while writes go on: restored, it is a
 * crash-consistent image only once replay has passed the seq at which the copy ended, not at
 * its epoch. The manifest records that seq (consistentAt) and a new replica says it is not
 * consistent until replay gets there.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { initReplica } from '../../src/migrate/index.js';
import { sha256File } from '../support/images.js';
import { RandomWorkload } from '../support/random-workload.js';
import { drainSource, startTestReplication } from '../support/replication.js';
import { tempDir } from '../support/temp.js';

const MiB = 1024 * 1024;
let dir: Awaited<ReturnType<typeof tempDir>>;
beforeAll(async () => (dir = await tempDir('ferry-consistency-')));
afterAll(async () => dir.cleanup());

it('a replica of a base copy made under writes is consistent only once replay passes the end of the copy (seed 23)', async () => {
  const sizeBytes = 16 * MiB;
  const { rep, repo, sourcePath } = await startTestReplication(join(dir.path, 'c'), { sizeBytes, seed: 23, journal: { segmentMaxAgeMs: 30 } });
  try {
    const workload = new RandomWorkload({ seed: 2300, sizeBytes, writers: 4, opsPerWriter: 40, maxIoBytes: MiB });
    const [copy] = await Promise.all([rep.baseCopy({ concurrency: 2 }), workload.run(rep.filter)]);
    const { manifest } = await repo.getManifest(copy.manifestId);
    expect(manifest.consistentAt).toBeGreaterThan(manifest.epoch); // writes went on while it read

    const replicaPath = join(dir.path, 'replica.img');
    const applier = await initReplica({ repo, diskId: 'disk0', manifestId: copy.manifestId, replicaPath });
    try {
      expect(applier.snapshot()).toMatchObject({ nextSeq: manifest.epoch, consistentFromSeq: manifest.consistentAt });
      expect(applier.consistent).toBe(false);
      const finalSeq = await drainSource(rep);
      await applier.applyUntil(finalSeq);
      expect(applier.consistent).toBe(true);
      expect(await sha256File(replicaPath)).toBe(await sha256File(sourcePath));
    } finally {
      await applier.close();
    }
  } finally {
    await rep.close();
  }
});
