/**
 * An unclean stop of `ferry filter` (SIGKILL in the middle of randomized concurrent writes)
 * costs a resync of the activity log's extents only, not of the whole disk, and the replica
 * still ends byte-exact: what was in flight, or recorded only in memory, lies in the log.
 * The replica's follower is SIGKILLed mid-apply too, and a new one carries on.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { FilterControlClient } from '../../src/api/filter-control-client.js';
import { defaultActivityExtentBytes, getDelta, listDeltas, readActivityLog } from '../../src/delta/index.js';
import { FileStore, Repository } from '../../src/store/index.js';
import { assertBuilt, ferry, startFollower } from '../support/cli.js';
import { startFilterProcess, type FilterProcess } from '../support/filter-process.js';
import { makeSparseImage, sha256File } from '../support/images.js';
import { writeConcurrently } from '../support/nbd-writers.js';
import { tempDir } from '../support/temp.js';

const MiB = 1024 * 1024;
const sizeBytes = 256 * MiB;
const seed = 6101;
let dir: Awaited<ReturnType<typeof tempDir>>;
const running: FilterProcess[] = [];
beforeAll(async () => {
  assertBuilt();
  dir = await tempDir('ferry-unclean-');
});
afterAll(async () => {
  for (const filter of running) filter.child.kill('SIGKILL');
  await dir.cleanup();
});

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>): Promise<T> {
  for (let i = 0; i < 1200; i++) {
    const value = await probe();
    if (value !== undefined) return value;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

it(`after SIGKILL mid-write, the resync ships at most the activity log's extents and the replica is exact (seed ${seed})`, async () => {
  console.log(`unclean-stop: seed ${seed}`);
  const image = join(dir.path, 'disk.img');
  const stateDir = join(dir.path, 'state');
  const storeDir = join(dir.path, 'store');
  const store = `file:${storeDir}`;
  const replica = join(dir.path, 'replica.img');
  await makeSparseImage(image, sizeBytes, seed, 0.1);

  const filter = await startFilterProcess({ image, stateDir, store, args: ['--chunk-size', '1M'] });
  running.push(filter);
  const control = new FilterControlClient(filter.control);
  await control.startBaseCopy('d0', { concurrency: 2 });
  const manifestId = await waitFor('the base copy', async () => {
    const copy = await control.baseCopy('d0');
    if (copy.state === 'failed') throw new Error(`base copy failed: ${copy.error?.message}`);
    return copy.state === 'done' ? copy.manifestId : undefined;
  });
  const init = await ferry(['replica', 'init', '--store', store, '--disk', 'd0', '--manifest', manifestId!, replica, '-q']);
  expect(init.code).toBe(0);
  const follower = await startFollower(store, replica);
  await writeConcurrently(filter.socketPath, seed, 40);
  const { replication } = (await control.disk('d0')).tracker;

  // SIGKILL the follower, then the filter, once enough writes are done, the writers still going.
  let completed = 0;
  const writing = writeConcurrently(filter.socketPath, seed + 10, 10_000, () => {
    completed++;
    if (completed === 300) follower.child.kill('SIGKILL');
    if (completed === 600) filter.child.kill('SIGKILL');
  }).catch(() => {}); // the filter is gone under them
  expect((await follower.done).signal).toBe('SIGKILL');
  expect((await filter.done).signal).toBe('SIGKILL');
  await writing;
  const log = await readActivityLog(join(stateDir, 'd0', 'activity-log.bin'), sizeBytes);
  expect(log).toBeDefined();
  const logBytes = log!.extents.length * defaultActivityExtentBytes;
  // The writers touched 48 MiB in two regions: the log holds at most their extents.
  expect(log!.extents.every((e) => (e >= 4 && e < 10) || (e >= 40 && e < 46))).toBe(true);
  expect(logBytes).toBeGreaterThan(0);

  // Restarted on the same state: the log's extents are resynced while the VM writes on.
  const again = await startFilterProcess({ image, stateDir, store, args: ['--chunk-size', '1M'] });
  running.push(again);
  const againControl = new FilterControlClient(again.control);
  expect(again.stderr()).toContain('not closed cleanly');
  await writeConcurrently(again.socketPath, seed + 20, 30);
  await waitFor('the resync', async () => {
    const { tracker } = await againControl.disk('d0');
    return tracker.mode === 'streaming' && tracker.consistent && tracker.dirtyBlocks === 0 ? true : undefined;
  });

  // Count what the resyncs shipped: every byte of every resync delta's extents.
  const repo = await Repository.open(new FileStore(storeDir));
  let resyncBytes = 0;
  for (const name of (await listDeltas(repo, 'd0', replication)).deltas) {
    if (name.kind !== 'resync') continue;
    for (const extent of (await getDelta(repo, name)).extents) resyncBytes += extent.length;
  }
  console.log(`unclean-stop: activity log ${log!.extents.length} extents (${logBytes / MiB} MiB), resync shipped ${(resyncBytes / MiB).toFixed(2)} MiB of a ${sizeBytes / MiB} MiB disk`);
  expect(resyncBytes).toBeGreaterThan(0);
  expect(resyncBytes).toBeLessThanOrEqual(logBytes);

  // A new follower takes over the replica where the killed one left it; the cutover takes it from that one.
  const nextFollower = await startFollower(store, replica);
  const cutover = await ferry(['cutover', '--disk', 'd0', '--control', again.control, '--store', store, '--replica', replica, '--verify', 'full', '--json']);
  expect(cutover.stderr).toBe('');
  expect(cutover.code).toBe(0);
  expect(await sha256File(replica)).toBe(await sha256File(image));
  expect((await nextFollower.done).code).toBe(0);
  expect((await again.stop()).code).toBe(0);
});
