/**
 * The agent's destination role in-process: replicas added over the control API (hono's
 * app.request, an agent with no disks) are restored from a live disk's base copy and
 * followed as its deltas come; after the writes stop and the source drains, the replica
 * equals the source. Bad requests name their fields; a second replica of the same id or
 * path is refused; a service opened again over the same state dir follows its replicas
 * again; one whose replication was cut over is recorded so and not followed again.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { filterControlApp } from '../../src/api/index.js';
import { FilterService, ReplicaService, type ReplicaStatus } from '../../src/migrate/index.js';
import { sha256File } from '../support/images.js';
import { RandomWorkload } from '../support/random-workload.js';
import { drainSource, startTestReplication } from '../support/replication.js';
import { tempDir } from '../support/temp.js';

const MiB = 1024 * 1024;
const sizeBytes = 12 * MiB;
let dir: { path: string; cleanup: () => Promise<void> };
beforeAll(async () => (dir = await tempDir('ferry-replicas-')));
afterAll(async () => dir.cleanup());

async function agentApp(stateDir: string) {
  const filter = await FilterService.start({ disks: [], stateDir, socketDir: stateDir });
  const replicas = await ReplicaService.open({ stateDir, pollMs: 10 });
  const app = filterControlApp(filter, { replicas });
  const call = async (method: string, path: string, body?: unknown) => {
    const res = await app.request(path, { method, body: body === undefined ? undefined : JSON.stringify(body), headers: { 'content-type': 'application/json' } });
    return { status: res.status, body: (await res.json()) as ReplicaStatus & { replicas?: ReplicaStatus[]; error?: { code: string; message: string } } };
  };
  return {
    call,
    replicas,
    close: async () => {
      await replicas.close();
      await filter.close();
    },
  };
}

async function until(condition: () => boolean | Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 1500; i++) {
    if (await condition()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe('replicas followed by the agent', () => {
  it('restores, follows, survives a restart of the service, and stops at a cutover', async () => {
    const base = join(dir.path, 'live');
    const stateDir = join(dir.path, 'agent-state');
    const replicaPath = join(dir.path, 'dest', 'vm1.img');
    await mkdir(join(dir.path, 'dest'));
    const { rep, repo, sourcePath, storeDir } = await startTestReplication(base, {
      sizeBytes,
      seed: 7,
      journal: { segmentMaxAgeMs: 30, segmentMaxBytes: 2 * MiB, hardLimitBytes: 256 * MiB },
    });
    const workload = (n: number) => new RandomWorkload({ seed: 700 + n, sizeBytes, writers: 3, opsPerWriter: 25, maxIoBytes: MiB }).run(rep.filter);
    const drain = () => drainSource(rep);
    const store = `file:${storeDir}`;
    let agent = await agentApp(stateDir);
    try {
      const [copy] = await Promise.all([rep.baseCopy({ concurrency: 2 }), workload(1)]);
      const spec = { id: 'vm1-root', disk: 'disk0', store, manifest: copy.manifestId, path: replicaPath };

      const added = await agent.call('POST', '/v1/replicas', spec);
      expect(added.status).toBe(201);
      expect(added.body).toMatchObject({ id: 'vm1-root', diskId: 'disk0', path: replicaPath, cutOver: false });
      expect(['restoring', 'following']).toContain(added.body.state);

      // The same id again, or the same path under another id: refused.
      expect((await agent.call('POST', '/v1/replicas', spec)).status).toBe(409);
      const samePath = await agent.call('POST', '/v1/replicas', { ...spec, id: 'other' });
      expect(samePath.status).toBe(409);
      expect(samePath.body.error!.message).toContain(replicaPath);
      // Another agent (another state dir) finds the replica locked by this one's follower.
      const other = await agentApp(join(dir.path, 'other-state'));
      try {
        const locked = await other.call('POST', '/v1/replicas', spec);
        expect(locked.status).toBe(409);
        expect(locked.body.error!.message).toContain('ferry agent (replica follower)');
        expect((await other.call('GET', '/v1/replicas')).body.replicas).toEqual([]);
      } finally {
        await other.close();
      }

      await workload(2);
      let finalSeq = await drain();
      await until(async () => {
        const s = (await agent.call('GET', '/v1/replicas/vm1-root')).body;
        return s.state === 'following' && s.nextSeq! >= finalSeq && s.consistent === true;
      }, 'the replica to catch up');
      expect(await sha256File(replicaPath)).toBe(await sha256File(sourcePath));
      const listed = await agent.call('GET', '/v1/replicas');
      expect(listed.body.replicas!.map((r) => r.id)).toEqual(['vm1-root']);
      expect(listed.body.replicas![0]!.deltasApplied).toBeGreaterThan(0);
      const registry = JSON.parse(await readFile(join(stateDir, 'replicas.json'), 'utf8'));
      expect(registry).toMatchObject({ version: 1, replicas: [{ id: 'vm1-root', diskId: 'disk0', store, path: replicaPath, state: 'following' }] });

      // A restart: the replicas are followed again and catch up with what was written meanwhile.
      await agent.close();
      await workload(3);
      agent = await agentApp(stateDir);
      finalSeq = await drain();
      await until(async () => {
        const s = (await agent.call('GET', '/v1/replicas/vm1-root')).body;
        return s.state === 'following' && s.nextSeq! >= finalSeq && s.consistent === true;
      }, 'the replica to catch up after the restart');
      expect(await sha256File(replicaPath)).toBe(await sha256File(sourcePath));

      // The replication is cut over: the follower stops, recorded so, also after a restart.
      const replication = (await agent.call('GET', '/v1/replicas/vm1-root')).body.replication!;
      await repo.putCutoverMark({ disk: 'disk0', replication, finalSeq, at: new Date().toISOString(), verified: 'deltas' });
      await until(async () => (await agent.call('GET', '/v1/replicas/vm1-root')).body.state === 'cut-over', 'the cutover to be seen');
      await agent.close();
      agent = await agentApp(stateDir);
      expect((await agent.call('GET', '/v1/replicas/vm1-root')).body).toMatchObject({ state: 'cut-over', cutOver: true, cutoverFinalSeq: finalSeq });

      // Removed: forgotten, the replica file stays.
      const removed = await agent.call('DELETE', '/v1/replicas/vm1-root');
      expect(removed.status).toBe(200);
      expect((await agent.call('GET', '/v1/replicas/vm1-root')).status).toBe(404);
      expect(await sha256File(replicaPath)).toBe(await sha256File(sourcePath));
      expect(JSON.parse(await readFile(join(stateDir, 'replicas.json'), 'utf8'))).toEqual({ version: 1, replicas: [] });
    } finally {
      await agent.close();
      await rep.close();
    }
  });

  it('names every wrong field of a request, and 404s an unknown replica', async () => {
    const agent = await agentApp(join(dir.path, 'bad-state'));
    try {
      const bad = await agent.call('POST', '/v1/replicas', { id: 'no spaces', disk: 3, store: 'ftp://x', path: 'relative.img' });
      expect(bad.status).toBe(400);
      const message = bad.body.error!.message;
      expect(message).toContain('id: expected');
      expect(message).toContain('"no spaces"');
      expect(message).toContain('disk: expected');
      expect(message).toContain('store: expected');
      expect(message).toContain('"ftp://x"');
      expect(message).toContain('manifest: expected');
      expect(message).toContain('path: expected');
      expect(message).toContain('"relative.img"');
      expect((await agent.call('POST', '/v1/replicas', { id: 'a', disk: 'd', store: 'file:/x', manifest: 'ab', path: '/x.img', extra: 1 })).status).toBe(400);
      const unknownManifest = await agent.call('POST', '/v1/replicas', { id: 'a', disk: 'd0', store: `file:${join(dir.path, 'no-store')}`, manifest: 'abcd', path: join(dir.path, 'x.img') });
      expect(unknownManifest.status).toBeGreaterThanOrEqual(400);
      expect((await agent.call('GET', '/v1/replicas')).body.replicas).toEqual([]);
      expect((await agent.call('GET', '/v1/replicas/nope')).status).toBe(404);
      expect((await agent.call('DELETE', '/v1/replicas/nope')).status).toBe(404);
    } finally {
      await agent.close();
    }
  });
});
