/**
 * The replicas an agent follows (its destination role), as routes of its control API:
 *
 *   POST   /v1/replicas       { id, disk, store, manifest, path }: restore the base and follow
 *                            the replication -> 201 and the replica's status; 400 names each
 *                            wrong field, 409 if the id exists or another process follows
 *                            the path
 *   GET    /v1/replicas       { replicas: [status, ...] }
 *   GET    /v1/replicas/:id   one replica's status (404 if unknown)
 *   DELETE /v1/replicas/:id   stop following it (the replica file stays) -> its last status
 */
import type { Context, Hono } from 'hono';
import { FerryError } from '../core/index.js';
import type { ReplicaService } from '../migrate/index.js';

/** Adds the replica routes to `app`; `jsonBody` reads a request's JSON object as the other routes do. */
export function mountReplicaRoutes(app: Hono, replicas: ReplicaService, jsonBody: (c: Context) => Promise<Record<string, unknown>>): void {
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
      path: body.path as string,
    });
    return c.json(status, 201);
  });
  app.get('/v1/replicas', (c) => c.json({ replicas: replicas.list() }));
  app.get('/v1/replicas/:id', (c) => c.json(replicas.status(c.req.param('id'))));
  app.delete('/v1/replicas/:id', async (c) => c.json(await replicas.remove(c.req.param('id'))));
}
