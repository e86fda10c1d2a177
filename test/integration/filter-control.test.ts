/**
 * The filter's control API in-process (hono's app.request) over a real FilterService: who
 * may quiesce, renew, drain, fence and resume a disk, what a lease that runs out does, and
 * that every bad request names its field. The disk and store are real files.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { filterControlApp } from '../../src/api/index.js';
import { FilterService } from '../../src/migrate/index.js';
import { FileStore, Repository } from '../../src/store/index.js';
import { makeSparseImage } from '../support/images.js';
import { NbdTestClient } from '../support/nbd-client.js';
import { tempDir } from '../support/temp.js';

let dir: { path: string; cleanup: () => Promise<void> };
let service: FilterService | undefined;
let count = 0;
beforeAll(async () => (dir = await tempDir('ferry-control-')));
afterEach(async () => {
  await service?.close();
  service = undefined;
});
afterAll(async () => dir.cleanup());

async function start() {
  const base = join(dir.path, `case-${++count}`);
  await makeSparseImage(`${base}.img`, 4 * 1024 * 1024, count, 0.5);
  const repo = await Repository.openOrInit(new FileStore(`${base}-store`), 1024 * 1024);
  service = await FilterService.start({ disks: [{ id: 'd0', path: `${base}.img` }], stateDir: `${base}-state`, socketDir: `${base}-state`, repo });
  const app = filterControlApp(service);
  const call = async (method: string, path: string, body?: unknown) => {
    const res = await app.request(path, { method, body: body === undefined ? undefined : JSON.stringify(body), headers: { 'content-type': 'application/json' } });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> & { error?: { code: string; message: string } } };
  };
  return { call, service, stateDir: `${base}-state`, image: `${base}.img`, repo };
}

async function until(condition: () => boolean): Promise<void> {
  for (let i = 0; i < 600 && !condition(); i++) await new Promise((r) => setTimeout(r, 20));
  expect(condition()).toBe(true);
}

describe('quiesce leases', () => {
  it('belong to one owner: another is refused (409) until the owner resumes', async () => {
    const { call, service } = await start();
    const first = await call('POST', '/v1/disks/d0/quiesce', { owner: 'cutover A', leaseMs: 60_000 });
    expect(first.status).toBe(200);
    expect(first.body).toMatchObject({ id: 'd0', quiesced: true, owner: 'cutover A', leaseMs: 60_000 });
    const second = await call('POST', '/v1/disks/d0/quiesce', { owner: 'cutover B' });
    expect(second.status).toBe(409);
    expect(second.body.error!.message).toMatch(/^disk d0 is quiesced by "cutover A" since .*; its lease ends at /);
    // Neither drain, fence nor resume is B's to do.
    expect((await call('POST', '/v1/disks/d0/drain', { owner: 'cutover B' })).status).toBe(409);
    expect((await call('POST', '/v1/disks/d0/fence', { owner: 'cutover B', finalSeq: 0 })).status).toBe(409);
    expect((await call('POST', '/v1/disks/d0/resume', { owner: 'cutover B' })).status).toBe(409);
    expect(service.status('d0').quiesced).toBe(true);
    // The same owner asking again renews; then it resumes.
    expect((await call('POST', '/v1/disks/d0/quiesce', { owner: 'cutover A' })).status).toBe(200);
    expect((await call('POST', '/v1/disks/d0/resume', { owner: 'cutover A' })).status).toBe(200);
    expect(service.status('d0')).toMatchObject({ quiesced: false });
    expect(service.status('d0').quiesce).toBeUndefined();
    expect((await call('POST', '/v1/disks/d0/quiesce', { owner: 'cutover B' })).status).toBe(200);
    // An operator may force a resume.
    expect((await call('POST', '/v1/disks/d0/resume', { force: true })).status).toBe(200);
    expect(service.status('d0').quiesced).toBe(false);
  });

  it('run out unless renewed: the disk resumes, and the late owner can neither renew, drain nor fence', async () => {
    const { call, service } = await start();
    expect((await call('POST', '/v1/disks/d0/quiesce', { owner: 'gone', leaseMs: 300 })).status).toBe(200);
    await until(() => !service.status('d0').quiesced);
    for (const [path, body] of [
      ['/v1/disks/d0/quiesce/renew', { owner: 'gone' }],
      ['/v1/disks/d0/drain', { owner: 'gone' }],
      ['/v1/disks/d0/fence', { owner: 'gone', finalSeq: 0 }],
      ['/v1/disks/d0/quiesce', { owner: 'gone' }],
    ] as const) {
      const reply = await call('POST', path, body);
      expect(reply.status, path).toBe(409);
      expect(reply.body.error!.message, path).toMatch(/^the quiesce of disk d0 by "gone" ran out at .* and the disk was resumed/);
    }
  });

  it('are renewed by their owner: the expiry moves on, with the lease asked for', async () => {
    const { call } = await start();
    const first = await call('POST', '/v1/disks/d0/quiesce', { owner: 'alive', leaseMs: 60_000 });
    await new Promise((r) => setTimeout(r, 20));
    const renewed = await call('POST', '/v1/disks/d0/quiesce/renew', { owner: 'alive', leaseMs: 120_000 });
    expect(renewed.status).toBe(200);
    expect(renewed.body).toMatchObject({ owner: 'alive', leaseMs: 120_000, since: first.body.since });
    expect(Date.parse(renewed.body.expiresAt as string)).toBeGreaterThan(Date.parse(first.body.expiresAt as string));
  });
});

describe('the fence', () => {
  it('commits a drained quiesce durably: IO refused, also after a restart, until released as a new replication', async () => {
    const { call, service: first, stateDir, image, repo } = await start();
    const replication = first.status('d0').tracker.replication;
    expect((await call('POST', '/v1/disks/d0/quiesce', { owner: 'cut' })).status).toBe(200);
    const { body: drained } = await call('POST', '/v1/disks/d0/drain', { owner: 'cut' });
    const stale = await call('POST', '/v1/disks/d0/fence', { owner: 'cut', finalSeq: (drained.finalSeq as number) + 1 });
    expect(stale.status).toBe(409);
    const fenced = await call('POST', '/v1/disks/d0/fence', { owner: 'cut', finalSeq: drained.finalSeq });
    expect(fenced.status).toBe(200);
    expect(fenced.body.fence).toMatchObject({ disk: 'd0', replication, finalSeq: drained.finalSeq, owner: 'cut' });
    expect(first.status('d0')).toMatchObject({ quiesced: false, fence: { finalSeq: drained.finalSeq } });
    // Nothing resumes a fenced disk but a release.
    expect((await call('POST', '/v1/disks/d0/resume', { force: true })).status).toBe(409);
    expect((await call('POST', '/v1/disks/d0/quiesce', { owner: 'again' })).status).toBe(409);

    // A restart on the same state keeps the fence.
    await first.close();
    service = await FilterService.start({ disks: [{ id: 'd0', path: image }], stateDir, socketDir: stateDir, repo });
    const app = filterControlApp(service);
    expect(service.status('d0').fence).toMatchObject({ replication, finalSeq: drained.finalSeq });
    // An NBD client is turned away at the handshake, told why and how to release it.
    await expect(NbdTestClient.connect({ path: service.status('d0').socketPath, exportName: 'd0' })).rejects.toThrow(/disk d0 was cut over .*ferry fence release/);
    const released = await app.request('/v1/disks/d0/fence', { method: 'DELETE', body: JSON.stringify({ reason: 'failback drill' }) });
    expect(released.status).toBe(200);
    const next = ((await released.json()) as { replication: string }).replication;
    expect(next).not.toBe(replication);
    expect(service.status('d0')).toMatchObject({ tracker: { replication: next } });
    expect(service.status('d0').fence).toBeUndefined();
  });
});

describe('bad requests name the field and the value received', () => {
  it.each([
    ['POST', '/v1/disks/d0/quiesce', {}, /^owner: expected a name of 1 to 200 printable characters/],
    ['POST', '/v1/disks/d0/quiesce', { owner: 'x', leaseMs: 5 }, /^leaseMs: expected a whole number from 100 to 600000, received 5/],
    ['POST', '/v1/disks/d0/quiesce', { owner: 'a\nb' }, /^owner: /],
    ['POST', '/v1/disks/d0/resume', {}, /^owner: expected the quiesce's owner, or "force": true/],
    ['POST', '/v1/disks/d0/resume', { force: 'yes' }, /^force: expected true, or no "force", received "yes"/],
    ['POST', '/v1/disks/d0/drain', { owner: 7 }, /^owner: .*received 7/],
    ['POST', '/v1/disks/d0/fence', { owner: 'x', finalSeq: -1 }, /^finalSeq: expected the seq the final drain reported, received -1/],
  ])('%s %s %j', async (method, path, body, message) => {
    const { call } = await start();
    const reply = await call(method, path, body);
    expect(reply.status).toBe(400);
    expect(reply.body.error).toMatchObject({ code: 'bad-input', message: expect.stringMatching(message) });
  });
});
