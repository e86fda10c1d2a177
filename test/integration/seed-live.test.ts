/**
 * Offline seeding of a disk in use, end to end: randomized concurrent writers run through
 * the capture filter of a live DiskReplication while the seed is exported, and while it
 * "travels" (a copy of the device directory); the destination imports the copy into its
 * store, builds the replica from the seed's manifest (epoch = the seed's), and the source's
 * shipper resumes: a resync of the blocks dirtied since the epoch, then streaming. After the
 * disk-level cutover with full verification the replica is byte-identical to the source,
 * and only dirty blocks crossed the network, never the whole disk.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cp } from 'node:fs/promises';
import { join } from 'node:path';
import { exportLiveSeed, resumeAfterSeed } from '../../src/migrate/index.js';
import { importSeed, verifySeed, type SeedKey } from '../../src/seed/index.js';
import { sha256File } from '../support/images.js';
import { RandomWorkload } from '../support/random-workload.js';
import { startTestReplication } from '../support/replication.js';
import { tempDir } from '../support/temp.js';

const MiB = 1024 * 1024;
let dir: { path: string; cleanup: () => Promise<void> };
beforeAll(async () => (dir = await tempDir('ferry-seed-live-')));
afterAll(async () => dir.cleanup());

async function seededMigration(seed: number, key?: SeedKey) {
  const base = join(dir.path, `seed-${seed}`);
  const sizeBytes = 32 * MiB;
  // The store holds the destination's side: deltas come over the network, the base by courier.
  const { rep, repo, sourcePath } = await startTestReplication(base, {
    sizeBytes,
    seed,
    dataFraction: 0.6,
    journal: { segmentMaxAgeMs: 30, segmentMaxBytes: 2 * MiB },
  });
  try {
    let phase = 'before';
    const completedIn: Record<string, number> = {};
    const workload = (n: number, ops: number) =>
      new RandomWorkload({ seed: seed * 100 + n, sizeBytes, writers: 4, opsPerWriter: ops, maxIoBytes: 2 * MiB }).run(rep.filter, {
        onComplete: (op) => {
          if (op.kind !== 'read' && op.kind !== 'flush') completedIn[phase] = (completedIn[phase] ?? 0) + 1;
        },
      });

    await workload(1, 15); // streaming, shipped as journal deltas older than the seed's epoch

    // The export reads the disk while the writers write through the capture filter.
    const deviceDir = `${base}-device`;
    phase = 'export';
    const [exported] = await Promise.all([
      exportLiveSeed({ replications: [rep], deviceDir, chunkSizeBytes: MiB, volumeSizeBytes: 4 * MiB, readAhead: 1, key, ferryVersion: 'test' }).finally(() => (phase = 'transit')),
      workload(2, 80),
    ]);
    const epoch = exported.manifest.disks[0]!.manifest.epoch;
    expect(epoch).toBeGreaterThan(0);
    expect(rep.tracker.mode).toBe('bitmap');

    // In transit: the VM keeps writing; only the dirty bitmap records it, nothing is shipped.
    await workload(3, 30);
    expect(rep.shipper.figures().resyncs).toBe(0);

    // Shipping: a copy of the device directory.
    const shipped = `${base}-shipped`;
    await cp(deviceDir, shipped, { recursive: true });
    expect((await verifySeed({ deviceDir: shipped, key })).ok).toBe(true);
    const imported = await importSeed({ deviceDir: shipped, repo, key });
    expect(imported.complete).toBe(true);
    const manifest = imported.manifests[0]!;
    expect(manifest.epoch).toBe(epoch);

    // Catch-up: the replica starts at the seed's epoch; the shipper resyncs, then streams.
    phase = 'catch-up';
    await rep.startReplica(manifest.manifestId);
    resumeAfterSeed(rep);
    await workload(4, 40);
    const cutover = await rep.cutover({ verify: 'full' });
    const shipper = rep.shipper.figures();
    return {
      cutover,
      completedIn,
      shipper,
      sizeBytes,
      sourceHash: await sha256File(sourcePath),
      replicaHash: await sha256File(`${base}-replica.img`),
    };
  } finally {
    await rep.close();
  }
}

describe('offline seeding of a disk in use', () => {
  for (const seed of [1, 2, 3]) {
    it(`replica equals source after seed, import, catch-up and cutover (seed ${seed})`, async () => {
      const result = await seededMigration(seed);
      expect(result.completedIn.export).toBeGreaterThan(0); // writes landed while the seed was read
      expect(result.completedIn.transit).toBeGreaterThan(0);
      expect(result.cutover.verified).toBe('full');
      expect(result.replicaHash).toBe(result.sourceHash);
      expect(result.shipper.resyncs).toBe(1);
      expect(result.shipper.resyncBytesShipped).toBeLessThan(result.sizeBytes); // the dirty blocks, not the disk
    });
  }

  it('the same with an encrypted seed', async () => {
    const result = await seededMigration(4, { passphrase: 'open sesame' });
    expect(result.replicaHash).toBe(result.sourceHash);
  });
});
