import { mkdtemp, open, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { ActivityLog, readActivityLog } from '../../src/delta/activity-log.js';

const M = 1024 * 1024;
const sizeBytes = 64 * M;
let dir: string;
let path: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ferry-activity-'));
  path = join(dir, 'activity-log.bin');
});
afterEach(async () => rm(dir, { recursive: true, force: true }));

const openLog = (fresh: boolean, hotExtents = 0) => ActivityLog.open(path, { sizeBytes, fresh, recoveredSeq: 10, hotExtents });
const onDisk = async () => (await readActivityLog(path, sizeBytes))?.extents;

it('an extent is in the file before begin() resolves; it leaves only with nothing in flight and every record below releasedBelow', async () => {
  const log = await openLog(true);
  expect(await onDisk()).toEqual([]);
  const pending = log.begin(4 * M - 512, 1024); // extents 0 and 1
  expect(pending).toBeInstanceOf(Promise);
  await pending;
  expect(await onDisk()).toEqual([0, 1]);
  expect(log.begin(0, 512)).toBeUndefined(); // durable already: no wait
  log.recorded(4 * M - 512, 1024, 5);
  log.end(4 * M - 512, 1024);
  log.evict(6);
  expect(log.extents().map((e) => e.offset)).toEqual([0]); // extent 0 still has a write in flight
  log.recorded(0, 512, 7);
  log.end(0, 512);
  log.evict(7);
  expect(log.extents()).toHaveLength(1); // its record 7 is not below 7
  log.evict(8);
  expect(log.extents()).toEqual([]);
  await log.close();
  expect(await onDisk()).toEqual([]);
});

it('keeps up to hotExtents extents that could leave, the least recently written leaving first', async () => {
  const log = await openLog(true, 2);
  for (const extent of [3, 1, 7, 1]) {
    await log.begin(extent * 4 * M, 512);
    log.recorded(extent * 4 * M, 512, 1);
    log.end(extent * 4 * M, 512);
  }
  log.evict(2);
  expect(log.extents().map((e) => e.offset / (4 * M))).toEqual([1, 7]); // 3 was written to longest ago
  await log.close();
  expect(await onDisk()).toEqual([1, 7]);
});

it('a torn newer slot leaves the older one; a missing or foreign file says every extent', async () => {
  const log = await openLog(true);
  await log.begin(20 * M, 4096); // extent 5, generation 2 (slot 0)
  log.end(20 * M, 4096);
  await log.begin(40 * M, 4096); // extents 5 and 10, generation 3 (slot 1)
  log.end(40 * M, 4096);
  await log.close(); // generation 4 (slot 0), the same
  expect(await onDisk()).toEqual([5, 10]);
  const slotBytes = (await stat(path)).size / 2;
  const file = await open(path, 'r+');
  await file.write(Buffer.from([0xff]), 0, 1, 32); // flipped bits in slot 0's extent bits
  await file.close();
  expect(await onDisk()).toEqual([5, 10]); // generation 3, from slot 1
  const torn = await open(path, 'r+');
  await torn.write(Buffer.alloc(slotBytes), 0, slotBytes, slotBytes); // slot 1 gone too
  await torn.close();
  expect(await onDisk()).toBeUndefined();
  const reopened = await openLog(false);
  expect(reopened.recovered).toBe(false);
  expect(reopened.extents()).toHaveLength(16); // nothing known: the whole disk
  expect(reopened.bytes).toBe(sizeBytes);
  await reopened.close();
  expect(await readActivityLog(path, 2 * sizeBytes)).toBeUndefined(); // another geometry
});
