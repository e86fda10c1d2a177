/**
 * Write backpressure against a capped link (docs/DESIGN.md, "Throttles and backpressure",
 * invariant 8): the link takes 10 MB/s, a writer tries 40 MB/s of 1 MiB sequential writes.
 * Backpressure must slow the writer enough that the journal stays below its hard limit
 * without the tracker ever falling back to the bitmap, and the cutover afterwards must still
 * leave a byte-identical replica.
 *
 * The numbers: high water 8 MiB, hard limit 32 MiB, max delay 400 ms. To meet a 10 MB/s
 * drain a 1 MiB writer needs about 105 ms per write, which the linear delay gives at about
 * a quarter of the way from the high-water mark to the limit (about 14 MiB unshipped): well
 * inside the limit, and far outside it without backpressure (40 - 10 MB/s over 5 s).
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { FileStore, Repository } from '../../src/store/index.js';
import { DiskReplication, Throttle } from '../../src/migrate/index.js';
import { sha256File } from '../support/images.js';
import { createPrng, fillRandom } from '../support/random-workload.js';
import { tempDir } from '../support/temp.js';

const MiB = 1024 * 1024;
let dir: { path: string; cleanup: () => Promise<void> };
beforeAll(async () => (dir = await tempDir()));
afterAll(async () => dir.cleanup());

it('a 40 MB/s writer over a 10 MB/s link is slowed by backpressure; the journal stays under its hard limit and cutover converges', async () => {
  const linkBytesPerSec = 10_000_000;
  const wantedBytesPerSec = 40_000_000;
  const writeSeconds = 5;
  const hardLimitBytes = 32 * MiB;
  const highWaterBytes = 8 * MiB;
  const sizeBytes = 64 * MiB;

  const sourcePath = join(dir.path, 'source.img');
  const replicaPath = join(dir.path, 'replica.img');
  const file = await open(sourcePath, 'w');
  await file.truncate(sizeBytes); // all holes: the base copy stores nothing and costs no budget
  await file.close();

  const throttle = new Throttle(linkBytesPerSec);
  const repo = await Repository.openOrInit(new FileStore(join(dir.path, 'store')), MiB);
  const rep = await DiskReplication.start({
    diskId: 'disk0',
    sourcePath,
    trackerDir: join(dir.path, 'tracker'),
    repo,
    replicaPath,
    throttle,
    journal: { segmentMaxAgeMs: 250, segmentMaxBytes: 4 * MiB, hardLimitBytes },
    backpressure: { highWaterBytes, maxDelayMs: 400 },
    applyPollMs: 20,
  });
  const modes: string[] = [];
  rep.tracker.on('mode', (change) => modes.push(change.mode));
  const copy = await rep.baseCopy();
  await rep.startReplica(copy.manifestId);

  // Unshipped journal bytes, sampled every few ms and after every write.
  let maxUnshipped = 0;
  let maxDelayMs = 0;
  const sample = () => {
    const state = rep.tracker.state();
    maxUnshipped = Math.max(maxUnshipped, state.unshippedJournalBytes);
    maxDelayMs = Math.max(maxDelayMs, rep.backpressure.currentDelayMs);
    if (state.mode !== 'streaming') modes.push(`state:${state.mode}`);
  };
  const sampler = setInterval(sample, 5);

  // The writer: 1 MiB sequential writes (wrapping around the disk), paced to 40 MB/s; a write
  // slowed by backpressure simply makes the next one late.
  const random = createPrng(42);
  const buffers = Array.from({ length: 8 }, () => {
    const b = Buffer.allocUnsafe(MiB);
    fillRandom(b, random);
    return b;
  });
  let written = 0;
  let offset = 0;
  const started = performance.now();
  for (let i = 0; performance.now() - started < writeSeconds * 1000; i++) {
    const due = started + (1000 * i * MiB) / wantedBytesPerSec;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    const data = buffers[i % buffers.length]!;
    data.writeUInt32LE(i, 0); // every write differs, so the replica check means something
    await rep.filter.write(data, offset);
    written += data.byteLength;
    offset = (offset + MiB) % sizeBytes;
    sample();
  }
  const achievedBytesPerSec = written / ((performance.now() - started) / 1000);

  const cutover = await rep.cutover({ verify: 'full' });
  clearInterval(sampler);
  sample();
  const figures = rep.figures();
  const [sourceHash, replicaHash] = [await sha256File(sourcePath), await sha256File(replicaPath)];
  await rep.close();
  await throttle.close();

  // Backpressure did the work: the journal rose above the high-water mark (so writes were
  // delayed), never passed the hard limit, and the tracker never fell back to the bitmap.
  expect(maxUnshipped).toBeGreaterThan(highWaterBytes);
  expect(maxDelayMs).toBeGreaterThan(0);
  expect(maxUnshipped).toBeLessThanOrEqual(hardLimitBytes);
  expect(modes).toEqual([]);
  expect(figures.mode).toBe('streaming');
  expect(figures.consistent).toBe(true);
  // The writer was slowed well below what it asked for (it gets about the link's 10 MB/s).
  expect(achievedBytesPerSec).toBeLessThan(0.6 * wantedBytesPerSec);
  // And the cutover converged to a byte-identical replica.
  expect(cutover.verified).toBe('full');
  expect(figures.lagSeq).toBe(0);
  expect(replicaHash).toBe(sourceHash);
});
