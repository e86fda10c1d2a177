/**
 * The control interface of a `ferry filter` process: a small JSON HTTP API (hono), served
 * on a local unix socket (see unix-http.ts) and, by `ferry agent`, over TLS with a bearer
 * token (tls-http.ts). Routes:
 *
 *   GET  /healthz                   { ok: true }: the process answers (over TLS, without a token)
 *   GET  /v1/disks                  every disk's status, and the link's rate
 *   GET  /v1/disks/:id              one disk: figures, tracker state, shipper, NBD stats, base copy
 *   POST /v1/disks/:id/quiesce      { owner, leaseMs? }: hold new IO for a cutover; replies once
 *                                   the IO in flight is done; the disk resumes when the lease
 *                                   (default 30 s) runs out unless renewed; 409 while another
 *                                   owner holds it
 *   POST /v1/disks/:id/quiesce/renew  { owner, leaseMs? }: extend the lease; 409 once it ran out
 *   POST /v1/disks/:id/resume       { owner } or { force: true }: let IO through again
 *   POST /v1/disks/:id/drain        { owner }: quiesced only: seal and ship everything -> { finalSeq, bytes }
 *   POST /v1/disks/:id/fence        { owner, finalSeq }: the cutover's commit: refuse the disk's IO
 *                                   durably, also after a restart
 *   DELETE /v1/disks/:id/fence      { reason? }: an operator's release (failback): the disk serves
 *                                   IO again, as a new replication -> { replication }
 *   POST /v1/disks/:id/hash         SHA-256 of the source disk (for a full verify at cutover)
 *   POST /v1/disks/:id/base-copy    start a base copy in the background ({ concurrency? }) -> 202
 *   GET  /v1/disks/:id/base-copy    its progress and, when done, the manifest id
 *   PUT  /v1/disks/:id/mode         { mode: "streaming" | "bitmap", reason? }
 *   PUT  /v1/disks/:id/backpressure { highWaterBytes?, maxDelayMs? } -> the disk's settings
 *   POST /v1/seed-export            export a seed of the running disks onto a device directory,
 *                                   in the background ({ device, disks?, volumeSizeBytes?, key? })
 *                                   -> 202; key: { keyFileBase64 } or { passphrase }
 *   GET  /v1/seed-export            its progress and, when done, the seed id
 *   POST /v1/seed-import            an agent's: import a seed device that came by courier into a
 *                                   store, in the background ({ device, store, key? }) -> 202
 *   GET  /v1/seed-import            its progress and, when done, the manifests (or what was
 *                                   corrupt or missing)
 *   GET  /v1/rate, PUT /v1/rate     the link's budget, shared by all disks:
 *                                   { rate: "50M/s" } or { rateBytesPerSec: 50000000 }
 *   GET  /v1/inventory              an agent's only: its VMs (--vm) and their disks
 *   /v1/vms/...                     an agent's only: its host's VMs, see vm-routes.ts
 *   /v1/replicas...                 with a ReplicaService (ferry agent): the replicas this
 *                                   host follows, see replica-routes.ts
 *
 * Errors are `{ error: { code, message } }` with the status from http-errors.ts; bad input
 * names the field and the value received. Numbers that are not finite (a predicted pause
 * with no drain rate measured yet) are sent as null.
 */
import { Hono } from 'hono';
import { FerryError, badInput, parseRate, type Logger } from '../core/index.js';
import type { FilterService, ReplicaService, SeedImportJob } from '../migrate/index.js';
import type { SeedKey } from '../seed/index.js';
import { errorResponse } from './http-errors.js';
import { jsonBody, optionalInt, owner } from './request-fields.js';
import { mountReplicaRoutes } from './replica-routes.js';
import { mountVmRoutes } from './vm-routes.js';

/** The control API of a filter; with `replicas` (an agent), the replica and VM routes too. */
export function filterControlApp(service: FilterService, options: { replicas?: ReplicaService; seedImports?: SeedImportJob; vms?: Array<{ name: string; disks: string[] }>; logger?: Logger; env?: NodeJS.ProcessEnv } = {}): Hono {
  const app = new Hono();

  app.get('/healthz', (c) => c.json({ ok: true }));
  app.get('/v1/disks', (c) => c.json({ disks: service.list(), rateBytesPerSec: service.throttle.rateBytesPerSec }));
  app.get('/v1/disks/:id', (c) => c.json(service.status(c.req.param('id'))));

  app.post('/v1/disks/:id/quiesce', async (c) => {
    const id = c.req.param('id');
    const body = await jsonBody(c);
    return c.json({ id, quiesced: true, ...(await service.quiesce(id, owner(body, 'disk'), optionalInt(body, 'leaseMs', 100, 600_000))) });
  });
  app.post('/v1/disks/:id/quiesce/renew', async (c) => {
    const id = c.req.param('id');
    const body = await jsonBody(c);
    return c.json({ id, quiesced: true, ...service.renew(id, owner(body, 'disk'), optionalInt(body, 'leaseMs', 100, 600_000)) });
  });
  app.post('/v1/disks/:id/resume', async (c) => {
    const id = c.req.param('id');
    const body = await jsonBody(c);
    if (body.force !== undefined && body.force !== true) throw badInput('force', body.force, 'true, or no "force"');
    if (body.force !== true && body.owner === undefined) throw badInput('owner', undefined, 'the quiesce\'s owner, or "force": true');
    service.resume(id, { owner: body.owner === undefined ? undefined : owner(body, 'disk'), force: body.force === true });
    return c.json({ id, quiesced: false });
  });
  app.post('/v1/disks/:id/drain', async (c) => {
    const id = c.req.param('id');
    const body = await jsonBody(c);
    return c.json({ id, ...(await service.drainFinal(id, owner(body, 'disk'), c.req.raw.signal)) });
  });
  app.post('/v1/disks/:id/fence', async (c) => {
    const id = c.req.param('id');
    const body = await jsonBody(c);
    const finalSeq = body.finalSeq;
    if (typeof finalSeq !== 'number' || !Number.isSafeInteger(finalSeq) || finalSeq < 0) throw badInput('finalSeq', finalSeq, 'the seq the final drain reported');
    return c.json({ id, fence: await service.fence(id, owner(body, 'disk'), finalSeq) });
  });
  app.delete('/v1/disks/:id/fence', async (c) => {
    const id = c.req.param('id');
    const body = await jsonBody(c);
    const reason = body.reason ?? 'operator request';
    if (typeof reason !== 'string' || reason === '') throw badInput('reason', reason, 'a string');
    return c.json({ id, fenced: false, replication: await service.releaseFence(id, reason) });
  });
  app.post('/v1/disks/:id/hash', async (c) => {
    const id = c.req.param('id');
    return c.json({ id, ...(await service.hash(id, c.req.raw.signal)) });
  });

  app.post('/v1/disks/:id/base-copy', async (c) => {
    const body = await jsonBody(c);
    const concurrency = optionalInt(body, 'concurrency', 1, 256);
    return c.json(service.startBaseCopy(c.req.param('id'), { concurrency }), 202);
  });
  app.get('/v1/disks/:id/base-copy', (c) => c.json(service.baseCopyStatus(c.req.param('id'))));

  app.put('/v1/disks/:id/mode', async (c) => {
    const id = c.req.param('id');
    const body = await jsonBody(c);
    const mode = body.mode;
    if (mode !== 'streaming' && mode !== 'bitmap') throw badInput('mode', mode, '"streaming" or "bitmap"');
    const reason = body.reason;
    if (reason !== undefined && typeof reason !== 'string') throw badInput('reason', reason, 'a string');
    return c.json({ id, mode: await service.setMode(id, mode, reason) });
  });

  app.put('/v1/disks/:id/backpressure', async (c) => {
    const body = await jsonBody(c);
    const changes: { highWaterBytes?: number; maxDelayMs?: number } = {};
    for (const field of ['highWaterBytes', 'maxDelayMs'] as const) {
      const value = body[field];
      if (value === undefined) continue;
      if (typeof value !== 'number') throw badInput(field, value, 'a number');
      changes[field] = value;
    }
    return c.json(service.setBackpressure(c.req.param('id'), changes));
  });

  app.post('/v1/seed-export', async (c) => {
    const body = await jsonBody(c);
    const device = body.device;
    if (typeof device !== 'string' || !device.startsWith('/')) throw badInput('device', device, 'an absolute path of a directory');
    const disks = body.disks;
    if (disks !== undefined && !(Array.isArray(disks) && disks.every((d) => typeof d === 'string'))) throw badInput('disks', disks, 'a list of disk ids');
    const volumeSizeBytes = optionalInt(body, 'volumeSizeBytes', 1024 * 1024, Number.MAX_SAFE_INTEGER);
    return c.json(service.startSeedExport({ deviceDir: device, diskIds: disks as string[] | undefined, volumeSizeBytes, key: seedKey(body.key) }), 202);
  });
  app.get('/v1/seed-export', (c) => c.json(service.seedExportStatus()));

  const imports = options.seedImports;
  if (imports) {
    app.post('/v1/seed-import', async (c) => {
      const body = await jsonBody(c);
      const device = body.device;
      if (typeof device !== 'string' || !device.startsWith('/')) throw badInput('device', device, 'an absolute path of the seed device (a directory)');
      if (typeof body.store !== 'string') throw badInput('store', body.store, 'a store URL: file:<dir> or s3://bucket[/prefix]');
      return c.json(imports.start({ deviceDir: device, store: body.store, key: seedKey(body.key) }), 202);
    });
    app.get('/v1/seed-import', (c) => c.json(imports.status()));
  }

  app.get('/v1/rate', (c) => c.json({ rateBytesPerSec: service.throttle.rateBytesPerSec }));
  app.put('/v1/rate', async (c) => {
    const body = await jsonBody(c);
    let rate: number;
    if (body.rate !== undefined) {
      if (typeof body.rate !== 'string') throw badInput('rate', body.rate, 'a rate string such as "50M/s" or "unlimited"');
      rate = parseRate(body.rate, 'rate');
    } else if (body.rateBytesPerSec !== undefined) {
      const value = body.rateBytesPerSec;
      if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) throw badInput('rateBytesPerSec', value, 'a number of bytes per second, 0 for unlimited');
      rate = value;
    } else {
      throw badInput('rate', undefined, 'a "rate" (e.g. "50M/s") or a "rateBytesPerSec"');
    }
    service.setRate(rate);
    return c.json({ rateBytesPerSec: service.throttle.rateBytesPerSec });
  });

  if (options.replicas) {
    // The agent's inventory: its VMs (--vm) with their disks; a disk of no VM is listed as a VM of its own.
    app.get('/v1/inventory', (c) => {
      const disks = new Map(service.list().map((d) => [d.id, { id: d.id, sizeBytes: d.sizeBytes }]));
      const grouped = (options.vms ?? []).map((vm) => ({ name: vm.name, disks: vm.disks.flatMap((id) => disks.get(id) ?? []) }));
      const inVm = new Set(grouped.flatMap((vm) => vm.disks.map((d) => d.id)));
      return c.json({ vms: [...grouped, ...[...disks.values()].filter((d) => !inVm.has(d.id)).map((d) => ({ name: d.id, disks: [d] }))] });
    });
    mountReplicaRoutes(app, options.replicas);
    mountVmRoutes(app, { logger: options.logger, env: options.env });
  }

  app.notFound((c) => {
    const { status, body } = errorResponse(new FerryError('not-found', `no route ${c.req.method} ${new URL(c.req.url).pathname}`));
    return c.json(body, status as 404);
  });
  app.onError((err, c) => {
    const { status, body } = errorResponse(err);
    return c.json(body, status as 400);
  });
  return app;
}

function seedKey(value: unknown): SeedKey | undefined {
  if (value === undefined) return undefined;
  const key = value as { keyFileBase64?: unknown; passphrase?: unknown } | null;
  if (key && typeof key.keyFileBase64 === 'string' && key.keyFileBase64 !== '') return { keyFile: Buffer.from(key.keyFileBase64, 'base64') };
  if (key && typeof key.passphrase === 'string' && key.passphrase !== '') return { passphrase: key.passphrase };
  throw badInput('key', '(not shown)', '{ keyFileBase64 } or { passphrase }, not empty');
}
