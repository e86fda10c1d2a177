/**
 * A live migration of a disk with Ceph's radosgw as the store (scripts/radosgw), not only
 * s3rver: `ferry filter` captures randomized concurrent writers over NBD while its base copy
 * runs and while it streams deltas; the replica follows (`ferry replica apply --follow`);
 * the cutover verifies the whole replica, which must equal the source byte for byte.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { FilterControlClient } from '../../src/api/filter-control-client.js';
import { assertBuilt, ferry, startFollower } from '../support/cli.js';
import { startFilterProcess, type FilterProcess } from '../support/filter-process.js';
import { makeSparseImage, sha256File } from '../support/images.js';
import { writeConcurrently } from '../support/nbd-writers.js';
import { startRadosgw } from '../support/radosgw.js';
import type { S3TestServer } from '../support/s3-server.js';
import { tempDir } from '../support/temp.js';

const MiB = 1024 * 1024;
const seed = 6201;
let dir: Awaited<ReturnType<typeof tempDir>>;
let radosgw: S3TestServer;
const running: FilterProcess[] = [];
beforeAll(async () => {
  assertBuilt();
  dir = await tempDir('ferry-radosgw-');
  radosgw = await startRadosgw('ferry-migration');
}, 300_000);
afterAll(async () => {
  for (const filter of running) filter.child.kill('SIGKILL');
  await radosgw?.stop();
  await dir?.cleanup();
});

it(`a live migration through radosgw ends with the replica equal to the source (seed ${seed})`, async () => {
  console.log(`radosgw-migration: seed ${seed}`);
  const image = join(dir.path, 'disk.img');
  const replica = join(dir.path, 'replica.img');
  await makeSparseImage(image, 256 * MiB, seed, 0.1);
  // Credentials from the environment, as an operator's would be.
  const env = { AWS_ACCESS_KEY_ID: radosgw.accessKeyId, AWS_SECRET_ACCESS_KEY: radosgw.secretAccessKey };
  const store = `s3://${radosgw.bucket}/site-a`;
  const s3 = ['--s3-endpoint', radosgw.endpoint];
  const filter = await startFilterProcess({ image, stateDir: join(dir.path, 'state'), store, args: ['--chunk-size', '1M', ...s3], env });
  running.push(filter);
  const control = new FilterControlClient(filter.control);

  await control.startBaseCopy('d0', { concurrency: 2 });
  await writeConcurrently(filter.socketPath, seed, 40); // while the base copy reads the disk
  let manifestId: string | undefined;
  for (let i = 0; i < 1200 && manifestId === undefined; i++) {
    const copy = await control.baseCopy('d0');
    if (copy.state === 'failed') throw new Error(`base copy failed: ${copy.error?.message}`);
    if (copy.state === 'done') manifestId = copy.manifestId;
    else await new Promise((r) => setTimeout(r, 50));
  }
  expect(manifestId).toBeDefined();
  const init = await ferry(['replica', 'init', '--store', store, ...s3, '--disk', 'd0', '--manifest', manifestId!, replica, '-q'], env);
  expect(init.stderr).toBe('');
  expect(init.code).toBe(0);

  const follower = await startFollower(store, replica, [...s3], env);
  await writeConcurrently(filter.socketPath, seed + 10, 60); // streamed while the replica follows
  const cutover = await ferry(['cutover', '--disk', 'd0', '--control', filter.control, '--store', store, ...s3, '--replica', replica, '--verify', 'full', '--json'], env);
  expect(cutover.stderr).toBe('');
  expect(cutover.code).toBe(0);
  expect(JSON.parse(cutover.stdout)).toMatchObject({ verified: 'full' });
  expect(await sha256File(replica)).toBe(await sha256File(image));
  expect((await follower.done).code).toBe(0); // the follower ends with the cutover
  expect((await filter.stop()).code).toBe(0);
});
