/**
 * A guest's TRIM (fstrim, a discarding mkfs) deallocates: the source image gets holes where
 * it had data, instead of being filled with zeros, and so does the replica; both read as
 * zeros there, and the replica stays byte-identical to the source.
 */
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { sha256File } from '../support/images.js';
import { startTestReplication } from '../support/replication.js';
import { tempDir } from '../support/temp.js';

const MiB = 1024 * 1024;
let dir: Awaited<ReturnType<typeof tempDir>>;
beforeAll(async () => (dir = await tempDir('ferry-trim-')));
afterAll(async () => dir.cleanup());

const allocated = async (path: string) => (await stat(path)).blocks * 512;

it('a trim punches holes at the source and at the replica, which stay equal', async () => {
  const sizeBytes = 64 * MiB;
  const { rep, sourcePath, replicaPath } = await startTestReplication(join(dir.path, 't'), { sizeBytes, seed: 17, dataFraction: 0.9, journal: { segmentMaxAgeMs: 30 } });
  try {
    const copy = await rep.baseCopy();
    await rep.startReplica(copy.manifestId);
    const sourceBefore = await allocated(sourcePath);
    const replicaBefore = await allocated(replicaPath);

    // The guest trims half the disk: 32 MiB, mostly data.
    await rep.filter.trim(16 * MiB, 32 * MiB);
    const back = new Uint8Array(32 * MiB);
    await rep.filter.read(back, 16 * MiB);
    expect(back.every((b) => b === 0)).toBe(true);
    expect(await allocated(sourcePath)).toBeLessThanOrEqual(sourceBefore - 16 * MiB); // most of the range held data

    await rep.cutover({ verify: 'full' });
    expect(await sha256File(replicaPath)).toBe(await sha256File(sourcePath));
    expect(await allocated(replicaPath)).toBeLessThanOrEqual(replicaBefore - 16 * MiB); // zero extents under 1 MiB are written
  } finally {
    await rep.close();
  }
});
