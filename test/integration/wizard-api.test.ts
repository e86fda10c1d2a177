/**
 * The migration service's wizard API, in process (`app.request`) over a real SQLite file in
 * a temp directory: every route, happy paths and bad input (each wrong field named with the
 * value received), no token and a wrong token, store checks against a `file:` store, a real
 * S3 server and unreachable ones, and an OpenAPI document that lists every route.
 */
import { createServer } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadWizardApi, type WizardApp } from '../../src/api/index.js';
import { Logger, openDatabase, type Database } from '../../src/core/index.js';
import { ServiceRecords } from '../../src/migrate/index.js';
import { startS3Server, type S3TestServer } from '../support/s3-server.js';
import { tempDir } from '../support/temp.js';

let dir: Awaited<ReturnType<typeof tempDir>>;
let db: Database;
let records: ServiceRecords;
let app: WizardApp;
let token: string;
let s3: S3TestServer;
const logLines: string[] = [];

const wrongToken = `ferry_${'x'.repeat(43)}`;
const fingerprint = `sha256:${'ab'.repeat(32)}`;
const inFuture = () => new Date(Date.now() + 24 * 3600_000).toISOString();

beforeAll(async () => {
  dir = await tempDir('wizard-api-');
  db = openDatabase(join(dir.path, 'state', 'ferry.db'));
  records = new ServiceRecords(db);
  token = records.createToken('tests').token;
  s3 = await startS3Server('wizard');
  const { wizardApp } = await loadWizardApi();
  const logger = new Logger((level, message, fields) => logLines.push(`${level} ${message} ${JSON.stringify(fields)}`), 'debug');
  app = wizardApp({ records, logger, s3: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey }, storeCheckTimeoutMs: 20_000 });
});
afterAll(async () => {
  db?.close();
  await s3?.stop();
  await dir?.cleanup();
});

interface Reply {
  status: number;
  headers: Headers;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  body: any;
}

async function call(method: string, path: string, body?: unknown, options: { token?: string | null; raw?: string; contentType?: string } = {}): Promise<Reply> {
  const headers: Record<string, string> = {};
  const bearer = options.token === undefined ? token : options.token;
  if (bearer !== null) headers.authorization = `Bearer ${bearer}`;
  let payload: string | undefined;
  if (options.raw !== undefined) payload = options.raw;
  else if (body !== undefined) payload = JSON.stringify(body);
  if (payload !== undefined) headers['content-type'] = options.contentType ?? 'application/json';
  const res = await app.request(path, { method, headers, ...(payload !== undefined ? { body: payload } : {}) });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: text ? JSON.parse(text) : undefined };
}

/** The issues of a 400, as `path: message` lines. */
function issues(reply: Reply): string[] {
  expect(reply.status, JSON.stringify(reply.body)).toBe(400);
  expect(reply.body.error.code).toBe('bad-input');
  const lines = (reply.body.error.issues as Array<{ path: string; message: string }>).map((i) => `${i.path}: ${i.message}`);
  for (const line of lines) expect(reply.body.error.message).toContain(line);
  return lines;
}

function host(name: string, role: string, inventory?: unknown) {
  return { name, role, agent: { url: 'https://10.0.0.5:7443', fingerprint, token: `agent-token-of-${name}-0123456789` }, ...(inventory ? { inventory } : {}) };
}

let source: string;
let destination: string;
let store: string;

function migration(overrides: Record<string, unknown> = {}) {
  return {
    name: 'shop',
    sourceHost: source,
    destinationHost: destination,
    store,
    vms: [
      { name: 'db', disks: [{ id: 'db-root', replica: '/dest/db-root.img' }, { id: 'db-data' }] },
      { name: 'app', disks: [{ id: 'app-root' }] },
    ],
    ...overrides,
  };
}

describe('health and authentication', () => {
  it('answers /healthz without a token', async () => {
    const reply = await call('GET', '/healthz', undefined, { token: null });
    expect(reply).toMatchObject({ status: 200, body: { status: 'ok' } });
  });

  it('refuses every /v1 route without a token, with a wrong one, or with another scheme (401)', async () => {
    const routes: Array<[string, string]> = [
      ['GET', '/v1/hosts'],
      ['POST', '/v1/hosts'],
      ['GET', '/v1/hosts/host-1'],
      ['DELETE', '/v1/hosts/host-1'],
      ['POST', '/v1/hosts/host-1/inventory'],
      ['GET', '/v1/stores'],
      ['POST', '/v1/stores'],
      ['GET', '/v1/stores/store-1'],
      ['DELETE', '/v1/stores/store-1'],
      ['POST', '/v1/stores/store-1/check'],
      ['GET', '/v1/migrations'],
      ['POST', '/v1/migrations'],
      ['GET', '/v1/migrations/mig-1'],
      ['POST', '/v1/migrations/mig-1/validate'],
      ['PATCH', '/v1/migrations/mig-1/throttle'],
      ['POST', '/v1/migrations/mig-1/cancel'],
      ['GET', '/v1/migrations/mig-1/events'],
      ['POST', '/v1/migrations/mig-1/start'],
      ['POST', '/v1/migrations/mig-1/pause'],
      ['POST', '/v1/migrations/mig-1/resume'],
      ['POST', '/v1/migrations/mig-1/cutover'],
      ['POST', '/v1/migrations/mig-1/cutover/go'],
      ['POST', '/v1/migrations/mig-1/cutover/cancel'],
      ['GET', '/v1/migrations/mig-1/progress'],
      ['GET', '/v1/openapi.json'],
      ['GET', '/v1/no-such-route'],
    ];
    for (const [method, path] of routes) {
      for (const bad of [null, wrongToken, '']) {
        const reply = await call(method, path, undefined, { token: bad });
        expect(reply.status, `${method} ${path} with ${JSON.stringify(bad)}`).toBe(401);
        expect(reply.body.error.code).toBe('unauthorized');
        expect(reply.headers.get('www-authenticate')).toBe('Bearer realm="ferry"');
      }
    }
    const basic = await app.request('/v1/hosts', { headers: { authorization: `Basic ${Buffer.from(`u:${token}`).toString('base64')}` } });
    expect(basic.status).toBe(401);
    expect((await call('GET', '/v1/hosts', undefined, { token: null })).body.error.message).toMatch(/bearer token is required/);
    expect((await call('GET', '/v1/hosts', undefined, { token: wrongToken })).body.error.message).toMatch(/not one of this service's tokens/);
  });

  it('lets a known token in, and a revoked one no longer', async () => {
    const extra = records.createToken('short-lived');
    expect((await call('GET', '/v1/hosts', undefined, { token: extra.token })).status).toBe(200);
    records.revokeToken('short-lived');
    expect((await call('GET', '/v1/hosts', undefined, { token: extra.token })).status).toBe(401);
  });

  it('answers an unknown route 404 in the error shape', async () => {
    const reply = await call('GET', '/v1/nothing-here');
    expect(reply).toMatchObject({ status: 404, body: { error: { code: 'not-found', message: 'no route GET /v1/nothing-here' } } });
  });
});

describe('hosts', () => {
  it('adds, lists, gets and removes hosts; the agent token is kept but never shown', async () => {
    const created = await call('POST', '/v1/hosts', host('site-a', 'source', { vms: [{ name: 'db', disks: [{ id: 'db-root', sizeBytes: 1024 }, { id: 'db-data' }] }, { name: 'app', disks: [{ id: 'app-root' }] }] }));
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    expect(created.body).toMatchObject({ name: 'site-a', role: 'source', agent: { url: 'https://10.0.0.5:7443', fingerprint } });
    expect(JSON.stringify(created.body)).not.toContain('agent-token-of');
    source = created.body.id;
    expect(records.getHost(source).agent.token).toBe('agent-token-of-site-a-0123456789');

    // The fingerprint as openssl prints it is accepted and kept in ferry's form.
    const colons = Array.from({ length: 32 }, () => 'CD').join(':');
    const dest = await call('POST', '/v1/hosts', { ...host('site-b', 'destination', { vms: [{ name: 'web', disks: [{ id: 'web-root' }] }] }), agent: { url: 'https://[::1]:7443/', fingerprint: colons, token: 'another-agent-token-0123' } });
    expect(dest.status, JSON.stringify(dest.body)).toBe(201);
    expect(dest.body.agent).toEqual({ url: 'https://[::1]:7443', fingerprint: `sha256:${'cd'.repeat(32)}` });
    destination = dest.body.id;

    const spare = await call('POST', '/v1/hosts', host('spare', 'both'));
    expect(spare.status).toBe(201);

    const list = await call('GET', '/v1/hosts');
    expect(list.status).toBe(200);
    expect(list.body.hosts.map((h: { name: string }) => h.name)).toEqual(['site-a', 'site-b', 'spare']);
    expect(JSON.stringify(list.body)).not.toContain('agent-token');

    const one = await call('GET', `/v1/hosts/${source}`);
    expect(one).toMatchObject({ status: 200, body: { id: source, name: 'site-a', inventory: { vms: [{ name: 'db' }, { name: 'app' }] } } });
    expect(typeof one.body.createdAt).toBe('string');

    expect((await call('DELETE', `/v1/hosts/${spare.body.id}`)).status).toBe(204);
    expect((await call('GET', `/v1/hosts/${spare.body.id}`)).status).toBe(404);
    expect((await call('DELETE', `/v1/hosts/${spare.body.id}`)).status).toBe(404);
  });

  it('refreshes a host\'s inventory from its agent only where the service reaches agents (409 here), and 404 for an unknown host', async () => {
    const created = await call('POST', '/v1/hosts', host('site-inv', 'source'));
    expect(created.body.inventory).toBeUndefined(); // no agent reached: none given, none read
    const refresh = await call('POST', `/v1/hosts/${created.body.id}/inventory`);
    expect(refresh).toMatchObject({ status: 409, body: { error: { code: 'invalid-state', message: 'this service reaches no agents' } } });
    expect((await call('POST', '/v1/hosts/host-nope/inventory')).status).toBe(404);
    expect((await call('DELETE', `/v1/hosts/${created.body.id}`)).status).toBe(204);
  });

  it('refuses a second host of the same name (409)', async () => {
    const reply = await call('POST', '/v1/hosts', host('site-a', 'both'));
    expect(reply).toMatchObject({ status: 409, body: { error: { code: 'conflict' } } });
    expect(reply.body.error.message).toMatch(/site-a/);
  });

  it('names every missing field', async () => {
    expect(issues(await call('POST', '/v1/hosts', {}))).toEqual([
      'body.name: expected string, received nothing',
      'body.role: expected one of "source", "destination", "both", received nothing',
      'body.agent: expected object, received nothing',
    ]);
    expect(issues(await call('POST', '/v1/hosts', { name: 'x', role: 'source', agent: {} }))).toEqual([
      'body.agent.url: expected string, received nothing',
      'body.agent.fingerprint: expected string, received nothing',
      'body.agent.token: expected string, received nothing',
    ]);
  });

  it('names every wrong field with the value received', async () => {
    const lines = issues(
      await call('POST', '/v1/hosts', {
        name: 'bad name!',
        role: 'sideways',
        agent: { url: 'http://10.0.0.5:7443', fingerprint: 'abc', token: 42 },
        inventory: { vms: [{ name: 'db', disks: [{ id: 'ok' }, { id: 'x/y', sizeBytes: -1 }] }] },
        colour: 'blue',
      }),
    );
    expect(lines).toEqual([
      `body.name: expected 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit, received "bad name!"`,
      'body.role: expected one of "source", "destination", "both", received "sideways"',
      `body.agent.url: expected the agent's address, https://HOST:PORT, received "http://10.0.0.5:7443"`,
      'body.agent.fingerprint: expected a SHA-256 fingerprint, sha256:<64 hex digits>, received "abc"',
      'body.agent.token: expected string, received 42',
      `body.inventory.vms[0].disks[1].id: expected 1 to 128 letters, digits, '.', '_' or '-', received "x/y"`,
      'body.inventory.vms[0].disks[1].sizeBytes: expected a number >= 0, received -1',
      'body.colour: unknown field, received "blue"',
    ]);
  });

  it('refuses a body that is not JSON', async () => {
    const malformed = await call('POST', '/v1/hosts', undefined, { raw: '{"name": ' });
    expect(malformed).toMatchObject({ status: 400, body: { error: { code: 'bad-input', message: 'body: expected a JSON document, received malformed JSON' } } });
    const text = await call('POST', '/v1/hosts', undefined, { raw: 'name=x', contentType: 'text/plain' });
    expect(text.status).toBe(415);
    expect(text.body.error.message).toBe('body: expected JSON (Content-Type: application/json), received Content-Type "text/plain"');
    const big = await call('POST', '/v1/hosts', { name: 'x'.repeat(2 * 1024 * 1024) });
    expect(big.status).toBe(413);
  });
});

describe('stores', () => {
  it('adds, lists, gets and checks a file: store (made a repository on first check)', async () => {
    const url = `file:${join(dir.path, 'store-a')}`;
    const created = await call('POST', '/v1/stores', { name: 'local', url });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    expect(created.body).toMatchObject({ name: 'local', url });
    expect(created.body.lastCheck).toBeUndefined();
    store = created.body.id;

    const first = await call('POST', `/v1/stores/${store}/check`);
    expect(first.status).toBe(200);
    expect(first.body.lastCheck).toMatchObject({ reachable: true, initialized: true, chunkSizeBytes: 4 * 1024 * 1024 });
    const second = await call('POST', `/v1/stores/${store}/check`);
    expect(second.body.lastCheck).toMatchObject({ reachable: true, initialized: false, repositoryId: first.body.lastCheck.repositoryId });
    expect(second.body.lastCheck.message).toMatch(/found the ferry repository/);

    const list = await call('GET', '/v1/stores');
    expect(list.body.stores.map((s: { id: string }) => s.id)).toEqual([store]);
    expect((await call('GET', `/v1/stores/${store}`)).body.lastCheck).toMatchObject({ reachable: true });
  });

  it('checks an s3: store on a real S3 server', async () => {
    const created = await call('POST', '/v1/stores', { name: 'bucket', url: `s3://${s3.bucket}/site-b`, s3: { endpoint: s3.endpoint } });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    const checked = await call('POST', `/v1/stores/${created.body.id}/check`);
    expect(checked.body.lastCheck, JSON.stringify(checked.body)).toMatchObject({ reachable: true, initialized: true });
    expect((await call('DELETE', `/v1/stores/${created.body.id}`)).status).toBe(204);
  });

  it('reports an unreachable store as the check\'s result, with the error', async () => {
    const proc = await call('POST', '/v1/stores', { name: 'nowhere', url: 'file:/proc/nope' });
    const procCheck = await call('POST', `/v1/stores/${proc.body.id}/check`);
    expect(procCheck.status).toBe(200);
    expect(procCheck.body.lastCheck).toMatchObject({ reachable: false });
    expect(procCheck.body.lastCheck.message).toContain('/proc/nope');

    const port = await closedPort();
    const closed = await call('POST', '/v1/stores', { name: 'closed', url: 's3://ferry-nowhere/x', s3: { endpoint: `http://127.0.0.1:${port}`, region: 'eu-west-1' } });
    expect(closed.status, JSON.stringify(closed.body)).toBe(201);
    const closedCheck = await call('POST', `/v1/stores/${closed.body.id}/check`);
    expect(closedCheck.body.lastCheck).toMatchObject({ reachable: false, code: 'store-unavailable' });
    expect((await call('GET', `/v1/stores/${closed.body.id}`)).body.lastCheck.reachable).toBe(false);
    for (const id of [proc.body.id, closed.body.id]) expect((await call('DELETE', `/v1/stores/${id}`)).status).toBe(204);
  });

  it('names every wrong field', async () => {
    expect(issues(await call('POST', '/v1/stores', {}))).toEqual(['body.name: expected string, received nothing', 'body.url: expected string, received nothing']);
    expect(issues(await call('POST', '/v1/stores', { name: 'a', url: 'ftp://x', s3: { endpoint: 'somewhere', region: '' } }))).toEqual([
      'body.url: expected file:<directory> or s3://bucket[/prefix], received "ftp://x"',
      'body.s3.endpoint: expected an http(s) URL such as http://10.0.0.9:9000, received "somewhere"',
      'body.s3.region: expected a non-empty string, received ""',
    ]);
    expect(issues(await call('POST', '/v1/stores', { name: 'a', url: 'file:relative/dir' }))).toEqual([
      'body.url: expected file:<absolute directory> (the service resolves no relative paths), received "file:relative/dir"',
    ]);
    expect((await call('POST', '/v1/stores', { name: 'local', url: 'file:/x' })).status).toBe(409);
  });

  it('answers 404 for an unknown store', async () => {
    for (const [method, path] of [['GET', '/v1/stores/store-nope'], ['DELETE', '/v1/stores/store-nope'], ['POST', '/v1/stores/store-nope/check']] as const) {
      const reply = await call(method, path);
      expect(reply).toMatchObject({ status: 404, body: { error: { code: 'not-found', message: 'no store "store-nope"' } } });
    }
  });
});

describe('migrations', () => {
  let id: string;

  it('creates a draft with defaults, lists it, gets it, and logs its creation', async () => {
    const created = await call('POST', '/v1/migrations', migration({ throttle: { rate: '50M/s' }, cutover: { at: inFuture(), budget: '500ms' }, runbook: { boot: [{ vms: ['db'], delay: '5s' }, { vms: ['app'] }] } }));
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    expect(created.body).toMatchObject({
      name: 'shop',
      state: 'draft',
      sourceHost: source,
      destinationHost: destination,
      store,
      transport: { mode: 'network' },
      throttle: { rate: '50M/s', schedule: [] },
      cutover: { window: '30m', budget: '500ms', hold: false },
      runbook: { onFailure: 'stop' },
    });
    id = created.body.id;
    expect((await call('GET', `/v1/migrations/${id}`)).body).toEqual(created.body);
    expect((await call('GET', '/v1/migrations')).body.migrations.map((m: { id: string }) => m.id)).toEqual([id]);
    const events = await call('GET', `/v1/migrations/${id}/events`);
    expect(events.status).toBe(200);
    expect(events.body.events).toHaveLength(1);
    expect(events.body.events[0].message).toMatch(/created as a draft: 2 VM\(s\), 3 disk\(s\)/);
  });

  it('validates a draft', async () => {
    const reply = await call('POST', `/v1/migrations/${id}/validate`);
    expect(reply.status, JSON.stringify(reply.body)).toBe(200);
    expect(reply.body.state).toBe('validated');
    const again = await call('POST', `/v1/migrations/${id}/validate`);
    expect(again.body.state).toBe('validated');
  });

  it('changes the throttle live, and logs it', async () => {
    const reply = await call('PATCH', `/v1/migrations/${id}/throttle`, { rate: '10M/s', schedule: [{ days: ['sat', 'sun'], from: '00:00', to: '24:00', rate: '400Mbit/s' }] });
    expect(reply.status, JSON.stringify(reply.body)).toBe(200);
    expect(reply.body.throttle).toEqual({ rate: '10M/s', schedule: [{ days: ['sat', 'sun'], from: '00:00', to: '24:00', rate: '400Mbit/s' }] });
    expect(reply.body.state).toBe('validated');
    const rateOnly = await call('PATCH', `/v1/migrations/${id}/throttle`, { rate: 'unlimited' });
    expect(rateOnly.body.throttle.schedule).toHaveLength(1);
    const events = (await call('GET', `/v1/migrations/${id}/events`)).body.events.map((e: { message: string }) => e.message);
    expect(events).toContain('throttle: rate 50M/s -> 10M/s, schedule of 1 window(s)');
    expect(events).toContain('throttle: rate 10M/s -> unlimited');
  });

  it('refuses a bad throttle, naming each field', async () => {
    expect(issues(await call('PATCH', `/v1/migrations/${id}/throttle`, { rate: 'fast' }))).toEqual(['body.rate: expected a rate such as 50M/s, 10MB/s, 100Mbit/s or unlimited, received "fast"']);
    expect(issues(await call('PATCH', `/v1/migrations/${id}/throttle`, {}))).toEqual(['body: expected "rate", "schedule" or both, received neither']);
    expect(
      issues(await call('PATCH', `/v1/migrations/${id}/throttle`, { schedule: [{ days: ['someday'], from: '8am', to: '07:00', rate: 5 }, { days: ['mon'], from: '18:00', to: '08:00', rate: '1M/s' }] })),
    ).toEqual([
      'body.schedule[0].days[0]: expected one of "mon", "tue", "wed", "thu", "fri", "sat", "sun", received "someday"',
      'body.schedule[0].from: expected a time of day, HH:MM (UTC), received "8am"',
      'body.schedule[0].rate: expected string, received 5',
      'body.schedule[1].to: expected a time after "from" (18:00), received "08:00"',
    ]);
    const stored = (await call('GET', `/v1/migrations/${id}`)).body.throttle;
    expect(stored.rate).toBe('unlimited');
  });

  it('returns events after a seq, and refuses a seq that is not a number', async () => {
    const all = (await call('GET', `/v1/migrations/${id}/events`)).body.events;
    const later = (await call('GET', `/v1/migrations/${id}/events?after=${all[1].seq}`)).body.events;
    expect(later).toEqual(all.slice(2));
    expect(issues(await call('GET', `/v1/migrations/${id}/events?after=abc`))).toEqual(['query.after: expected number, received "abc"']);
  });

  it('cancels, and then refuses to validate, throttle or cancel it again (409)', async () => {
    const reply = await call('POST', `/v1/migrations/${id}/cancel`);
    expect(reply).toMatchObject({ status: 200, body: { state: 'cancelled' } });
    for (const [method, path, body] of [
      ['POST', `/v1/migrations/${id}/cancel`, undefined],
      ['POST', `/v1/migrations/${id}/validate`, undefined],
      ['PATCH', `/v1/migrations/${id}/throttle`, { rate: '1M/s' }],
    ] as const) {
      const refused = await call(method, path, body);
      expect(refused.status, `${method} ${path}`).toBe(409);
      expect(refused.body.error).toMatchObject({ code: 'invalid-state' });
      expect(refused.body.error.message).toMatch(/cancelled/);
    }
    const events = (await call('GET', `/v1/migrations/${id}/events`)).body.events.map((e: { message: string }) => e.message);
    expect(events.at(-1)).toMatch(/^cancelled \(it was validated\)/);
  });

  it('answers 404 for an unknown migration', async () => {
    for (const [method, path, body] of [
      ['GET', '/v1/migrations/mig-nope', undefined],
      ['POST', '/v1/migrations/mig-nope/validate', undefined],
      ['PATCH', '/v1/migrations/mig-nope/throttle', { rate: '1M/s' }],
      ['POST', '/v1/migrations/mig-nope/cancel', undefined],
      ['GET', '/v1/migrations/mig-nope/events', undefined],
      ['POST', '/v1/migrations/mig-nope/start', undefined],
      ['POST', '/v1/migrations/mig-nope/pause', undefined],
      ['POST', '/v1/migrations/mig-nope/resume', undefined],
      ['POST', '/v1/migrations/mig-nope/cutover', {}],
      ['POST', '/v1/migrations/mig-nope/cutover/go', undefined],
      ['POST', '/v1/migrations/mig-nope/cutover/cancel', undefined],
      ['GET', '/v1/migrations/mig-nope/progress', undefined],
    ] as const) {
      const reply = await call(method, path, body);
      expect(reply, `${method} ${path}`).toMatchObject({ status: 404, body: { error: { code: 'not-found', message: 'no migration "mig-nope"' } } });
    }
  });

  it('refuses to remove a host or store a migration names (409)', async () => {
    for (const path of [`/v1/hosts/${source}`, `/v1/stores/${store}`]) {
      const reply = await call('DELETE', path);
      expect(reply.status).toBe(409);
      expect(reply.body.error.message).toContain(id);
    }
  });
});

describe('starting and cutting over', () => {
  const sides = {
    source: { driver: 'qemu', qmp: '/run/vm/db/qmp.sock' },
    destination: { driver: 'qemu', runDir: '/run/ferry/db', launch: { kernel: '/boot/vmlinuz' } },
    health: { console: 'login:', timeout: '2m' },
  };

  it('starts only a validated migration, and then lists its disks as progress', async () => {
    const draft = (await call('POST', '/v1/migrations', migration({ name: 'started' }))).body.id as string;
    const notStarted = await call('POST', `/v1/migrations/${draft}/pause`);
    expect(notStarted).toMatchObject({ status: 409, body: { error: { code: 'invalid-state' } } });
    expect(notStarted.body.error.message).toMatch(/is draft: only a started migration that is not cutting over can be paused/);
    const early = await call('POST', `/v1/migrations/${draft}/start`);
    expect(early).toMatchObject({ status: 409, body: { error: { code: 'invalid-state' } } });
    expect(early.body.error.message).toMatch(/is draft: only a validated migration is started/);
    expect((await call('POST', `/v1/migrations/${draft}/validate`)).status).toBe(200);
    const started = await call('POST', `/v1/migrations/${draft}/start`);
    expect(started).toMatchObject({ status: 200, body: { state: 'copying', cutoverRequested: false } });
    expect((await call('POST', `/v1/migrations/${draft}/start`)).status).toBe(409);
    expect((await call('POST', `/v1/migrations/${draft}/pause`)).body).toMatchObject({ state: 'copying', paused: true });
    expect((await call('POST', `/v1/migrations/${draft}/pause`)).body).toMatchObject({ paused: true }); // again: no change
    expect((await call('POST', `/v1/migrations/${draft}/resume`)).body).toMatchObject({ state: 'copying', paused: false });
    const progress = await call('GET', `/v1/migrations/${draft}/progress`);
    expect(progress.status).toBe(200);
    expect(progress.body.disks.map((d: { vm: string; disk: string; replicaId: string }) => [d.vm, d.disk, d.replicaId])).toEqual([
      ['db', 'db-root', `${draft}.db-root`],
      ['db', 'db-data', `${draft}.db-data`],
      ['app', 'app-root', `${draft}.app-root`],
    ]);
    // No service steers this app: nothing is under way to go or cancel.
    for (const action of ['go', 'cancel']) expect((await call('POST', `/v1/migrations/${draft}/cutover/${action}`)).status).toBe(409);
    const cancelled = await call('POST', `/v1/migrations/${draft}/cancel`);
    expect(cancelled.body.state).toBe('cancelled');
  });

  it('asks for a cutover only of VMs whose sides are known, naming each one missing or wrong', async () => {
    const id = (await call('POST', '/v1/migrations', migration({ name: 'cut' }))).body.id as string;
    expect((await call('POST', `/v1/migrations/${id}/cutover`, {})).body.error.message).toMatch(/is a draft: validate it first/);
    expect((await call('POST', `/v1/migrations/${id}/validate`)).status).toBe(200);
    expect(issues(await call('POST', `/v1/migrations/${id}/cutover`, {}))).toEqual([
      'migration.vms[0].source: expected how the source host runs VM "db" (as a cutover plan\'s vms[].source), received nothing',
      'migration.vms[0].destination: expected how the destination host runs VM "db" (as a cutover plan\'s vms[].destination), received nothing',
      'migration.vms[1].source: expected how the source host runs VM "app" (as a cutover plan\'s vms[].source), received nothing',
      'migration.vms[1].destination: expected how the destination host runs VM "app" (as a cutover plan\'s vms[].destination), received nothing',
    ]);
    const wrong = await call('POST', '/v1/migrations', migration({ name: 'wrong-sides', vms: [{ name: 'db', disks: [{ id: 'db-root' }], source: { driver: 'qemu' }, destination: { driver: 'vmware' } }] }));
    expect(issues(await call('POST', `/v1/migrations/${wrong.body.id}/validate`))).toEqual([
      'migration.vms[0]: source.qmp: expected a non-empty string, received nothing',
      'migration.vms[0]: destination.driver: expected "qemu" or "hooks", received "vmware"',
    ]);

    const good = (await call('POST', '/v1/migrations', migration({ name: 'good-sides', vms: [{ name: 'db', disks: [{ id: 'db-root' }], ...sides }] }))).body.id as string;
    expect((await call('POST', `/v1/migrations/${good}/validate`)).status).toBe(200);
    expect(issues(await call('POST', `/v1/migrations/${good}/cutover`, { at: 'tomorrow', hold: 'yes', verify: 'some', extra: 1 }))).toEqual([
      'body.at: expected an ISO 8601 time with a zone, such as 2026-12-06T22:00:00Z, received "tomorrow"',
      'body.hold: expected boolean, received "yes"',
      'body.verify: expected one of "deltas", "full", received "some"',
      'body.extra: unknown field, received 1',
    ]);
    const at = inFuture();
    const asked = await call('POST', `/v1/migrations/${good}/cutover`, { at, hold: true, verify: 'full' });
    expect(asked).toMatchObject({ status: 200, body: { state: 'validated', cutoverRequested: true, cutover: { at, hold: true, verify: 'full' } } });
    expect((await call('GET', `/v1/migrations/${good}/events`)).body.events.at(-1).message).toBe(`cutover requested for ${at}, held for the go`);
  });
});

describe('live views', () => {
  it('streams a migration as server-sent events: its events, then its progress; the stream of an ended migration ends', async () => {
    const id = (await call('POST', '/v1/migrations', migration({ name: 'streamed' }))).body.id as string;
    await call('POST', `/v1/migrations/${id}/cancel`);
    const res = await app.request(`/v1/migrations/${id}/stream`, { headers: { authorization: `Bearer ${token}` } });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const text = await res.text(); // ends: the migration is cancelled
    const events = [...text.matchAll(/^event: (\w+)\n(?:id: \d+\n)?data: (.*)$/gm)].map((m) => [m[1], JSON.parse(m[2]!)] as const);
    expect(events.map(([kind, data]) => [kind, data.message ?? data.state])).toEqual([
      ['event', expect.stringMatching(/^created as a draft/)],
      ['event', expect.stringMatching(/^cancelled \(it was draft\)/)],
      ['progress', 'cancelled'],
    ]);
    expect((await call('GET', '/v1/migrations/mig-nope/stream')).status).toBe(404);
  });

  it('serves Prometheus metrics behind the bearer token', async () => {
    expect((await call('GET', '/metrics', undefined, { token: null })).status).toBe(401);
    expect((await call('GET', '/metrics', undefined, { token: wrongToken })).status).toBe(401);
    const res = await app.request('/metrics', { headers: { authorization: `Bearer ${token}` } });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
    const text = await res.text();
    expect(text).toContain('# TYPE ferry_migration_state gauge');
    const streamed = (await call('GET', '/v1/migrations')).body.migrations.find((m: { name: string }) => m.name === 'streamed').id;
    expect(text).toContain(`ferry_migration_state{migration="${streamed}",name="streamed",state="cancelled"} 1`);
    expect(text).toContain(`ferry_migration_state{migration="${streamed}",name="streamed",state="draft"} 0`);
  });
});

describe('bad migrations', () => {
  it('names every missing field', async () => {
    expect(issues(await call('POST', '/v1/migrations', {}))).toEqual([
      'body.name: expected string, received nothing',
      'body.sourceHost: expected string, received nothing',
      'body.destinationHost: expected string, received nothing',
      'body.store: expected string, received nothing',
      'body.vms: expected array, received nothing',
    ]);
    expect(issues(await call('POST', '/v1/migrations', migration({ vms: [] })))).toEqual(['body.vms: expected at least 1 item, received []']);
    expect(issues(await call('POST', '/v1/migrations', migration({ vms: [{ name: 'db', disks: [{}] }] })))).toEqual(['body.vms[0].disks[0].id: expected string, received nothing']);
  });

  it('names every field of the wrong type, with the value received', async () => {
    const lines = issues(
      await call(
        'POST',
        '/v1/migrations',
        migration({
          name: 7,
          vms: [{ name: 'db', disks: [{ id: 'db-root' }, { id: 'db-data', replica: 42 }] }],
          transport: { mode: 'boat' },
          cutover: { hold: 'yes', at: 'tomorrow' },
        }),
      ),
    );
    expect(lines).toEqual([
      'body.name: expected string, received 7',
      'body.vms[0].disks[1].replica: expected string, received 42',
      'body.transport.mode: expected one of "network", "seed", received "boat"',
      'body.cutover.at: expected an ISO 8601 time with a zone, such as 2026-12-06T22:00:00Z, received "tomorrow"',
      'body.cutover.hold: expected boolean, received "yes"',
    ]);
  });

  it('refuses `fast` as a size, a rate or a duration, naming each', async () => {
    const lines = issues(
      await call(
        'POST',
        '/v1/migrations',
        migration({
          transport: { mode: 'seed', device: '/mnt/seed', volumeSize: 'fast' },
          throttle: { rate: 'fast' },
          backpressure: { highWater: 'fast', maxDelay: '0ms' },
          cutover: { window: 'fast', budget: '2 fortnights' },
        }),
      ),
    );
    expect(lines).toEqual([
      'body.transport.volumeSize: expected a size such as 512, 64K, 4M or 1G, received "fast"',
      'body.throttle.rate: expected a rate such as 50M/s, 10MB/s, 100Mbit/s or unlimited, received "fast"',
      'body.backpressure.highWater: expected a size such as 512, 64K, 4M or 1G, received "fast"',
      'body.backpressure.maxDelay: expected a duration above zero, such as 500ms, 30s, 5m or 1h, received "0ms"',
      'body.cutover.window: expected a duration such as 500ms, 30s, 5m or 1h, received "fast"',
      'body.cutover.budget: expected a duration such as 500ms, 30s, 5m or 1h, received "2 fortnights"',
    ]);
  });

  it('refuses a cutover window in the past, clearly', async () => {
    const [line] = issues(await call('POST', '/v1/migrations', migration({ cutover: { at: '2020-01-01T00:00:00Z', window: '30m' } })));
    expect(line).toMatch(/^body\.cutover\.at: expected a time whose window \(at \+ 30m\) has not passed, received "2020-01-01T00:00:00Z": the window ended 2020-01-01T00:30:00\.000Z, before now/);
  });

  it('refuses an unknown host or store id, and hosts in the wrong roles', async () => {
    expect(issues(await call('POST', '/v1/migrations', migration({ sourceHost: 'host-nope', store: 'store-nope' })))).toEqual([
      'body.sourceHost: expected the id of a known host, received "host-nope"',
      'body.store: expected the id of a known store, received "store-nope"',
    ]);
    expect(issues(await call('POST', '/v1/migrations', migration({ sourceHost: destination, destinationHost: source })))).toEqual([
      `body.sourceHost: host "site-b" (${destination}) has the role "destination"; expected a host whose role is "source" or "both"`,
      `body.destinationHost: host "site-a" (${source}) has the role "source"; expected a host whose role is "destination" or "both"`,
    ]);
  });

  it('refuses an unknown VM in the runbook, a VM booted twice or never', async () => {
    expect(issues(await call('POST', '/v1/migrations', migration({ runbook: { boot: [{ vms: ['db', 'web'] }, { vms: ['db'] }] } })))).toEqual([
      'body.runbook.boot[0].vms[1]: expected one of the migration\'s VMs (db, app), received "web"',
      'body.runbook.boot[1].vms[0]: VM "db" is also in boot step 0',
      'body.runbook.boot: VM "app" is in no boot step',
    ]);
  });

  it('refuses a disk listed twice, a VM named twice and a replica shared', async () => {
    expect(
      issues(
        await call(
          'POST',
          '/v1/migrations',
          migration({
            vms: [
              { name: 'db', disks: [{ id: 'db-root', replica: '/r/a.img' }, { id: 'db-data', replica: '/r/a.img' }] },
              { name: 'db', disks: [{ id: 'db-root' }] },
            ],
          }),
        ),
      ),
    ).toEqual([
      'body.vms[0].disks[1].replica: replica "/r/a.img" is also the replica of vms[0].disks[0]',
      'body.vms[1].name: VM "db" is listed twice (also vms[0])',
      'body.vms[1].disks[0].id: disk "db-root" is listed twice (also vms[0].disks[0])',
    ]);
  });

  it('finds at validation a VM or a disk that is not in the source host\'s inventory (a disk of another host)', async () => {
    const created = await call('POST', '/v1/migrations', migration({ name: 'strays', vms: [{ name: 'db', disks: [{ id: 'db-root' }, { id: 'web-root' }, { id: 'app-root' }] }, { name: 'mail', disks: [{ id: 'mail-root' }] }] }));
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    const reply = await call('POST', `/v1/migrations/${created.body.id}/validate`);
    expect(reply.body.error.message).toMatch(new RegExp(`^migration ${created.body.id} is not valid: `));
    expect(issues(reply)).toEqual([
      'migration.vms[0].disks[1].id: disk "web-root" is not a disk of VM "db" at host "site-a" (its disks: db-root, db-data); it is a disk of VM "web" at host "site-b"',
      'migration.vms[0].disks[2].id: disk "app-root" is not a disk of VM "db" at host "site-a" (its disks: db-root, db-data); it is a disk of VM "app"',
      'migration.vms[1].name: VM "mail" is not in the inventory of the source host "site-a"',
    ]);
    const after = await call('GET', `/v1/migrations/${created.body.id}`);
    expect(after.body.state).toBe('draft');
    const events = (await call('GET', `/v1/migrations/${created.body.id}/events`)).body.events;
    expect(events.at(-1).message).toMatch(/^validation found 3 problem\(s\): migration\.vms\[0\]\.disks\[1\]\.id/);
    expect((await call('POST', `/v1/migrations/${created.body.id}/cancel`)).status).toBe(200);
  });

  it('finds at validation a window that has passed since the draft was made', async () => {
    const created = await call('POST', '/v1/migrations', migration({ name: 'late', cutover: { at: new Date().toISOString(), window: '1s' } }));
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    await new Promise((resolve) => setTimeout(resolve, 1100));
    const [line] = issues(await call('POST', `/v1/migrations/${created.body.id}/validate`));
    expect(line).toMatch(/^migration\.cutover\.at: expected a time whose window \(at \+ 1s\) has not passed/);
  });
});

describe('the OpenAPI document', () => {
  it('lists every route of the app, with its parameters and the bearer scheme', async () => {
    const reply = await call('GET', '/v1/openapi.json');
    expect(reply.status).toBe(200);
    const doc = reply.body;
    expect(doc.openapi).toMatch(/^3\./);
    expect(doc.components.securitySchemes.bearer).toMatchObject({ type: 'http', scheme: 'bearer' });
    expect(doc.security).toEqual([{ bearer: [] }]);
    expect(doc.paths['/healthz'].get.security).toEqual([]);

    // Every route but the page's (the wizard's HTML, script and style) is in the document.
    const page = new Set(['GET /', 'GET /wizard/{file}']);
    const routes = app.routes.filter((r) => r.method !== 'ALL').map((r) => `${r.method} ${r.path.replace(/:(\w+)/g, '{$1}')}`).filter((r) => !page.has(r));
    const documented = Object.entries(doc.paths as Record<string, Record<string, unknown>>).flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`));
    expect(new Set(routes).size).toBeGreaterThanOrEqual(17);
    expect([...new Set(routes)].sort()).toEqual([...new Set(documented)].sort());

    // The schemas that validate requests are the ones described.
    const create = doc.paths['/v1/migrations'].post.requestBody.content['application/json'].schema;
    expect(create.$ref).toBe('#/components/schemas/MigrationCreate');
    expect(doc.components.schemas.MigrationCreate.required).toEqual(expect.arrayContaining(['name', 'sourceHost', 'destinationHost', 'store', 'vms']));
    expect(doc.paths['/v1/migrations/{id}/events'].get.parameters.map((p: { name: string; in: string }) => `${p.in}:${p.name}`).sort()).toEqual(['path:id', 'query:after']);
    expect(doc.paths['/v1/hosts'].post.responses['400'].content['application/json'].schema.$ref).toBe('#/components/schemas/Error');
  });
});

describe('logging', () => {
  it('logs requests by method, path, status and token name, never a token', () => {
    expect(logLines.some((l) => l.startsWith('info GET /v1/hosts 200') && l.includes('"token":"tests"'))).toBe(true);
    expect(logLines.some((l) => l.startsWith('warn request refused'))).toBe(true);
    for (const line of logLines) {
      expect(line).not.toContain(token);
      expect(line).not.toContain(wrongToken);
      expect(line).not.toContain('agent-token-of');
    }
  });
});

/** A TCP port that nothing listens on. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
