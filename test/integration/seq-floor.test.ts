/**
 * Power loss right after a delta shipped straight from memory: its segment was never written
 * to a file, so nothing named after its seqs is left on disk. Were the seqs given out again
 * after the power loss, a replica that applied the first ones would skip the second (and a
 * resync at a lower seq). They are not: before it stores the delta, the shipper has the
 * journal's state file say that the seqs after it come next, and the journal starts there.
 * Checked at the moment each journal delta lands in the store.
 */
import { cp } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ChangeTracker } from '../../src/delta/index.js';
import { FileStore, Repository, type ObjectStore, type PutOptions } from '../../src/store/index.js';
import { RandomWorkload } from '../support/random-workload.js';
import { drainSource, startTestReplication } from '../support/replication.js';
import { tempDir } from '../support/temp.js';

const MiB = 1024 * 1024;
let dir: Awaited<ReturnType<typeof tempDir>>;
beforeAll(async () => (dir = await tempDir('ferry-seq-floor-')));
afterAll(async () => dir.cleanup());

/** A store that, the moment a journal delta is stored, takes what a power loss would leave of the tracker's files. */
class PowerLossAfterPut implements ObjectStore {
  readonly snapshots: Array<{ path: string; lastSeq: number }> = [];
  constructor(
    private readonly inner: ObjectStore,
    private readonly trackerDir: string,
  ) {}
  get location() {
    return this.inner.location;
  }
  async put(key: string, data: Uint8Array, signal?: AbortSignal, options?: PutOptions) {
    await this.inner.put(key, data, signal, options);
    const seqs = /\/(\d{20})-(\d{20})\.journal$/.exec(key);
    if (seqs) {
      const path = `${this.trackerDir}-lost-${this.snapshots.length}`;
      await cp(this.trackerDir, path, { recursive: true });
      this.snapshots.push({ path, lastSeq: Number(seqs[2]) });
    }
  }
  flush = (signal?: AbortSignal) => this.inner.flush(signal);
  get = (key: string, signal?: AbortSignal) => this.inner.get(key, signal);
  stat = (key: string, signal?: AbortSignal) => this.inner.stat(key, signal);
  list = (prefix: string, signal?: AbortSignal) => this.inner.list(prefix, signal);
  delete = (key: string, signal?: AbortSignal) => this.inner.delete(key, signal);
  close = () => this.inner.close();
}

it('seqs in the store are never given out again after a power loss (seed 29)', async () => {
  const sizeBytes = 8 * MiB;
  const base = join(dir.path, 'f');
  const store = new PowerLossAfterPut(new FileStore(`${base}-store`), `${base}-tracker`);
  const { rep } = await startTestReplication(base, { sizeBytes, seed: 29, repo: await Repository.openOrInit(store, MiB), journal: { segmentMaxAgeMs: 20 } });
  try {
    // Writes without FLUSH or FUA: their segments ship from memory, no file is written.
    await new RandomWorkload({ seed: 2900, sizeBytes, writers: 2, opsPerWriter: 40, maxIoBytes: 256 * 1024, flushFraction: 0, fuaFraction: 0 }).run(rep.filter);
    await drainSource(rep);
  } finally {
    await rep.close();
  }
  expect(store.snapshots.length).toBeGreaterThan(0);
  for (const { path, lastSeq } of store.snapshots) {
    const reopened = await ChangeTracker.open({ dir: path, sizeBytes });
    try {
      expect(reopened.currentSeq, path).toBeGreaterThan(lastSeq);
    } finally {
      await reopened.close();
    }
  }
});
