/**
 * The replicas an agent follows (its destination role), as routes of its control API:
 *
 *   POST   /v1/replicas       { id, disk, store, manifest, path? }: restore the base and follow
 *                            the replication (path: default <state-dir>/replicas/<id>.img)
 *                            -> 201 and the replica's status; 400 names each
 *                            wrong field, 409 if the id exists or another process follows
 *                            the path
 *   GET    /v1/replicas       { replicas: [status, ...] }
 *   GET    /v1/replicas/:id   one replica's status (404 if unknown)
 *   DELETE /v1/replicas/:id   stop following it (the replica file stays) -> its last status
 *
 * A cutover run elsewhere (the migration service) holds a replica while it cuts over; each
 * call renews the hold's lease (default 60 s), after which the follower goes on:
 *
 *   POST /v1/replicas/:id/hold     { owner, leaseMs? }: the follower stops, the cutover holds
 *                                  the replica -> status; 409 if another owner holds it
 *   POST /v1/replicas/:id/apply    { owner, untilSeq? }: apply what the store holds, or until
 *                                  replay reaches untilSeq -> status
 *   POST /v1/replicas/:id/hash     { owner } -> { sha256, sizeBytes } of the whole replica
 *   POST /v1/replicas/:id/commit   { owner, finalSeq, verified: "full" | "deltas" } -> status
 *   POST /v1/replicas/:id/release  { owner }: the follower goes on -> status
 */
import type { Hono } from 'hono';
import { FerryError, badInput } from '../core/index.js';
import type { ReplicaService } from '../migrate/index.js';
import { jsonBody, optionalInt, owner } from './request-fields.js';

/** Adds the replica routes to `app`. */
export function mountReplicaRoutes(app: Hono, replicas: ReplicaService): void {
  app.post('/v1/replicas', async (c) => {
    const body = await jsonBody(c);
    const known = new Set(['id', 'disk', 'store', 'manifest', 'path']);
    const unknown = Object.keys(body).filter((k) => !known.has(k));
    if (unknown.length > 0) throw new FerryError('bad-input', `unknown field${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => JSON.stringify(k)).join(', ')}; expected id, disk, store, manifest, path`);
    const status = await replicas.add({
      id: body.id as string,
      diskId: body.disk as string,
      store: body.store as string,
      manifestId: body.manifest as string,
      path: body.path as string | undefined,
    });
    return c.json(status, 201);
  });
  app.get('/v1/replicas', (c) => c.json({ replicas: replicas.list() }));
  app.get('/v1/replicas/:id', (c) => c.json(replicas.status(c.req.param('id'))));
  app.delete('/v1/replicas/:id', async (c) => c.json(await replicas.remove(c.req.param('id'))));

  app.post('/v1/replicas/:id/hold', async (c) => {
    const body = await jsonBody(c);
    return c.json(await replicas.hold(c.req.param('id'), owner(body, 'replica'), optionalInt(body, 'leaseMs', 100, 3_600_000)));
  });
  app.post('/v1/replicas/:id/apply', async (c) => {
    const body = await jsonBody(c);
    return c.json(await replicas.applyHeld(c.req.param('id'), owner(body, 'replica'), { untilSeq: optionalInt(body, 'untilSeq', 0, Number.MAX_SAFE_INTEGER), signal: c.req.raw.signal }));
  });
  app.post('/v1/replicas/:id/hash', async (c) => {
    const body = await jsonBody(c);
    return c.json(await replicas.hashHeld(c.req.param('id'), owner(body, 'replica'), c.req.raw.signal));
  });
  app.post('/v1/replicas/:id/commit', async (c) => {
    const body = await jsonBody(c);
    const finalSeq = optionalInt(body, 'finalSeq', 0, Number.MAX_SAFE_INTEGER);
    if (finalSeq === undefined) throw badInput('finalSeq', undefined, 'the seq the final drain reported');
    if (body.verified !== 'full' && body.verified !== 'deltas') throw badInput('verified', body.verified, '"full" or "deltas"');
    return c.json(await replicas.commitHeld(c.req.param('id'), owner(body, 'replica'), finalSeq, body.verified, c.req.raw.signal));
  });
  app.post('/v1/replicas/:id/release', async (c) => c.json(await replicas.release(c.req.param('id'), owner(await jsonBody(c), 'replica'))));
}
