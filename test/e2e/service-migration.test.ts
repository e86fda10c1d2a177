/**
 * The migration service end to end, as an operator runs it: two `ferry agent`s (a source
 * host serving a running QEMU guest's disks, a destination host with none), each with its
 * own state directory and its control API over TLS on loopback, and `ferry serve` steering
 * them. Everything goes through the wizard API: hosts, store, migration, validate, start,
 * cutover. The replicas end byte-identical to the paused sources, the destination guest
 * checks the data it wrote at the source, and exactly one copy of each VM runs.
 */
import { cp, mkdir, readFile, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { ferry, startFerry } from '../support/cli.js';
import { serviceToken, wizardClient, type AgentProcess } from '../support/service.js';
import { SiteHarness, expectMoved, vmState, type Site } from '../support/service-site.js';
import { testGuest } from '../support/test-guest.js';
import { tempDir } from '../support/temp.js';

let dir: Awaited<ReturnType<typeof tempDir>>;
let harness: SiteHarness;

beforeAll(async () => {
  dir = await tempDir('ferry-service-');
  harness = new SiteHarness(dir.path, await testGuest());
});
afterEach(async () => {
  await harness.stop();
});
afterAll(async () => {
  await dir.cleanup();
});

/** Registers both hosts and the store, and creates the migration of VM `db` with `disks`. */
async function createMigration(s: Site, disks: string[], settings: Record<string, unknown> = {}): Promise<string> {
  const { call } = s;
  const host = (name: string, role: string, agent: AgentProcess) => call('POST', '/v1/hosts', { name, role, agent: { url: agent.url, fingerprint: agent.fingerprint, token: agent.token } });
  const src = await host('site-a', 'source', s.source);
  const dst = await host('site-b', 'destination', s.destination);
  const store = await call('POST', '/v1/stores', { name: 'shared', url: s.store });
  expect([src.status, dst.status, store.status]).toEqual([201, 201, 201]);
  const created = await call<{ id: string; state: string }>('POST', '/v1/migrations', {
    name: 'move-db',
    sourceHost: src.body.id,
    destinationHost: dst.body.id,
    store: store.body.id,
    vms: [
      {
        name: 'db',
        disks: disks.map((id) => ({ id })),
        ...harness.sides(s, disks),
      },
    ],
    cutover: { budget: '10s', window: '3m', verify: 'full', maxLagSeconds: 30 },
    ...settings,
  });
  expect(created.status, JSON.stringify(created.body)).toBe(201);
  const id = created.body.id;
  expect((await call('POST', `/v1/migrations/${id}/validate`)).body).toMatchObject({ state: 'validated' });
  return id;
}

/** Polls the migration until it is in `state` (or one of them, or failed), and returns it. */
async function until(s: Site, id: string, state: string | string[], timeoutMs = 180_000): Promise<{ state: string; error?: string }> {
  const states = [state, 'failed'].flat();
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const reply = await s.call<{ state: string; error?: string }>('GET', `/v1/migrations/${id}`).catch(() => undefined); // the service may be restarting
    if (reply && states.includes(reply.body.state)) return reply.body;
    if (Date.now() > deadline) throw new Error(`migration ${id} is ${reply?.body.state} after ${timeoutMs} ms, not ${state}; events: ${JSON.stringify((await s.call('GET', `/v1/migrations/${id}/events`)).body)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function events(s: Site, id: string): Promise<string[]> {
  return (await s.call<{ events: Array<{ message: string }> }>('GET', `/v1/migrations/${id}/events`)).body.events.map((e) => e.message);
}

it('two agents over TLS and the service move a running guest through the wizard API: the replicas equal the sources, the destination guest verifies its data', async () => {
  const disks = ['d0', 'd1'];
  const s = await harness.site('plain', disks);
  const id = await createMigration(s, disks);
  const started = await s.call('POST', `/v1/migrations/${id}/start`);
  expect(started.body).toMatchObject({ state: 'copying' });
  expect((await until(s, id, 'ready')).state).toBe('ready');

  const progress = (await s.call<{ disks: Array<{ disk: string; manifestId: string; replica: { state: string; consistent: boolean }; source: { mode: string } }> }>('GET', `/v1/migrations/${id}/progress`)).body;
  expect(progress.disks.map((d) => [d.disk, d.replica.state, d.replica.consistent, d.source.mode, typeof d.manifestId])).toEqual(disks.map((d) => [d, 'following', true, 'streaming', 'string']));

  // Prometheus sees each disk; the stream sends the progress.
  const metrics = await (await fetch(`${s.service.url}/metrics`, { headers: { authorization: `Bearer ${s.token}` } })).text();
  for (const disk of disks) expect(metrics).toMatch(new RegExp(`^ferry_disk_lag_seconds\\{migration="${id}",vm="db",disk="${disk}"\\} [0-9.e-]+$`, 'm'));
  expect(metrics).toContain(`ferry_migration_state{migration="${id}",name="move-db",state="ready"} 1`);
  const stream = await fetch(`${s.service.url}/v1/migrations/${id}/stream`, { headers: { authorization: `Bearer ${s.token}` } });
  const reader = stream.body!.getReader();
  let streamed = '';
  while (!/^event: progress\ndata: .*"state":"ready"/m.test(streamed)) streamed += new TextDecoder().decode((await reader.read()).value);
  await reader.cancel();

  // Paused: its disks park, and a cutover asked for meanwhile waits until it goes on.
  expect((await s.call('POST', `/v1/migrations/${id}/pause`)).body).toMatchObject({ state: 'ready', paused: true });
  const progressOf = async () => (await s.call<{ at: string; disks: Array<{ source: { parked: boolean; mode: string } }> }>('GET', `/v1/migrations/${id}/progress`)).body;
  await expect.poll(async () => (await progressOf()).disks.map((d) => [d.source.parked, d.source.mode]), { timeout: 30_000 }).toEqual(disks.map(() => [true, 'bitmap']));
  expect((await s.call('POST', `/v1/migrations/${id}/cutover`, {})).body).toMatchObject({ cutoverRequested: true });
  // Two more passes of the steering (each stamps the progress) leave it ready.
  const passes = [(await progressOf()).at];
  while (passes.length < 3) {
    await new Promise((r) => setTimeout(r, 100));
    const at = (await progressOf()).at;
    if (at !== passes.at(-1)) passes.push(at);
  }
  expect((await s.call('GET', `/v1/migrations/${id}`)).body).toMatchObject({ state: 'ready', paused: true });
  expect((await s.call('POST', `/v1/migrations/${id}/resume`)).body).toMatchObject({ paused: false });
  const done = await until(s, id, 'done');
  expect(done.state, done.error).toBe('done');
  await expectMoved(s, id, disks);
  expect(await events(s, id)).toEqual(
    expect.arrayContaining([
      expect.stringMatching(/^started/),
      expect.stringMatching(/^base copy of db\/d0 done/),
      expect.stringMatching(/^replica of db\/d1 added at the destination/),
      expect.stringMatching(/^every replica follows/),
      'paused by the operator',
      'db/d0 parked: its changes are tracked, nothing ships',
      'resumed by the operator',
      expect.stringMatching(/^db\/d1 streams again/),
      expect.stringMatching(/^cutover \S+ begun/),
      expect.stringMatching(/^cutover \S+ healthy/),
    ]),
  );
  // Agents' tokens never reach a log line.
  expect(s.service.stderr()).not.toContain(s.source.token);
});

it('survives SIGKILLs of the service during replication, before the commit (it rolls back) and after it (it rolls forward), and a restart of the destination agent', async () => {
  const disks = ['r0'];
  const s = await harness.site('restart', disks);
  const id = await createMigration(s, disks);
  expect((await s.call('POST', `/v1/migrations/${id}/start`)).status).toBe(200);
  await until(s, id, ['replicating', 'ready']);
  await harness.restartService(s);

  // The destination agent goes away and comes back: its replica is followed again.
  await harness.restartDestination(s);
  const ready = await until(s, id, 'ready');
  expect(ready.state, `${ready.error}: ${(await events(s, id)).join('\n')}`).toBe('ready');

  // Killed while the sources are paused and draining: the next service rolls back.
  await harness.restartService(s, { FERRY_FAILPOINT: 'cutover:draining' });
  expect((await s.call('POST', `/v1/migrations/${id}/cutover`, {})).status).toBe(200);
  expect((await s.service.done).signal).toBe('SIGKILL');
  await harness.restartService(s);
  const back = await until(s, id, 'ready');
  expect(back.error).toMatch(/rolled back: the coordinator stopped while draining/);
  expect(await vmState(s.sourceRun)).toBe('running');
  expect(await vmState(s.destinationRun)).toBe('absent');

  // Killed right after the commit: the next service rolls forward, and starts the destination once.
  await harness.restartService(s, { FERRY_FAILPOINT: 'cutover:committed' });
  expect((await s.call('POST', `/v1/migrations/${id}/cutover`, {})).status).toBe(200);
  expect((await s.service.done).signal).toBe('SIGKILL');
  expect(await vmState(s.destinationRun)).toBe('absent');
  await harness.restartService(s);
  const done = await until(s, id, 'done');
  expect(done.state, done.error).toBe('done');
  await expectMoved(s, id, disks);
  const log = (await readFile(join(s.destinationRun, 'console.log'), 'utf8')).match(/FERRY-GUEST: verify done/g) ?? [];
  expect(log).toHaveLength(1);
});

it('the same migration with the CLI: ferry host add, store add, migration create, validate, start, status --watch, cutover', async () => {
  const disks = ['c0'];
  const s = await harness.site('cli', disks);
  const tokenFile = join(s.base, 'api.token');
  await writeFile(tokenFile, `${s.token}\n`, { mode: 0o600 });
  const cli = async (args: string[]) => {
    const result = await ferry([...args, '--service', s.service.url, '--token-file', tokenFile]);
    expect(result.code, `ferry ${args.join(' ')}: ${result.stderr}`).toBe(0);
    return result.stdout.trim();
  };
  const agentToken = async (agent: AgentProcess) => {
    const file = join(s.base, `${new URL(agent.url).port}.token`);
    await writeFile(file, agent.token, { mode: 0o600 });
    return file;
  };
  const inventory = join(s.base, 'inventory.json');
  await writeFile(inventory, JSON.stringify({ vms: [{ name: 'db', disks: [{ id: 'c0' }] }] }));
  const source = (await cli(['host', 'add', 'site-a', '--role', 'source', '--agent', s.source.url, '--fingerprint', s.source.fingerprint, '--agent-token-file', await agentToken(s.source), '--inventory', inventory])).split(/\s+/)[0]!;
  const destination = (await cli(['host', 'add', 'site-b', '--role', 'destination', '--agent', s.destination.url, '--fingerprint', s.destination.fingerprint, '--agent-token-file', await agentToken(s.destination)])).split(/\s+/)[0]!;
  const store = await cli(['store', 'add', 'shared', s.store]);
  expect(store).toMatch(/reachable/);
  const file = join(s.base, 'migration.json');
  await writeFile(
    file,
    JSON.stringify({ name: 'by-cli', sourceHost: source, destinationHost: destination, store: store.split(/\s+/)[0], vms: [{ name: 'db', disks: [{ id: 'c0' }], ...harness.sides(s, disks) }], cutover: { budget: '10s', window: '3m', verify: 'full' } }),
  );
  const id = (await cli(['migration', 'create', file])).split(/\s+/)[0]!;
  expect(await cli(['migration', 'validate', id])).toMatch(/validated$/);
  expect(await cli(['migration', 'start', id])).toMatch(/copying$/);
  const bad = await ferry(['migration', 'cutover', id, '--verify', 'most', '--service', s.service.url, '--token-file', tokenFile]);
  expect(bad.code).toBe(2);
  expect(bad.stderr).toMatch(/--verify: expected deltas or full, received "most"/);
  expect(await cli(['migration', 'cutover', id])).toMatch(/ by-cli /);
  const watched = await cli(['migration', 'status', id, '--watch']);
  expect(watched).toMatch(/^migration \S+: done$/m);
  expect(watched).toMatch(/cutover \S+: healthy, downtime \d+ ms to running/);
  await expectMoved(s, id, disks);
  expect(await cli(['migration', 'events', id])).toMatch(/cutover \S+ healthy/);
  const noToken = await ferry(['migration', 'list', '--service', s.service.url], { FERRY_TOKEN: '' });
  expect(noToken.code).toBe(2);
  expect(noToken.stderr).toMatch(/an API token is needed/);
});

it('on one machine, ferry serve alone: its local agent serves the disk, and the migration goes from "local" to "local"', async () => {
  const base = join(dir.path, 'one');
  await mkdir(base, { recursive: true });
  const image = join(base, 'l0.img');
  await writeFile(image, '');
  await truncate(image, 8 * 1024 * 1024);
  const db = join(base, 'state', 'ferry.db');
  const token = await serviceToken(db);
  const { child, done } = startFerry(['serve', '--listen', '127.0.0.1:0', '--db', db, '--disk', `l0=${image}`, '--vm', 'db=l0', '--poll-ms', '200']);
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  try {
    await expect.poll(() => out, { timeout: 30_000 }).toMatch(/^db /m);
    const socketPath = new URL(/^export l0 (\S+)$/m.exec(out)![1]!).searchParams.get('socket')!;
    const s = { images: new Map([['l0', image]]), sourceRun: join(base, 'run-src'), destinationRun: join(base, 'run-dst'), call: wizardClient(() => /^url (\S+)$/m.exec(out)![1]!, token) };
    await harness.guestOn(s.sourceRun, [socketPath], ['l0']);
    harness.track(s.destinationRun);
    const { hosts } = (await s.call<{ hosts: Array<{ id: string; name: string; inventory: unknown }> }>('GET', '/v1/hosts')).body;
    expect(hosts).toEqual([expect.objectContaining({ name: 'local', inventory: { vms: [{ name: 'db', disks: [{ id: 'l0', sizeBytes: 8 << 20 }] }] } })]);
    const { stores } = (await s.call<{ stores: Array<{ id: string }> }>('GET', '/v1/stores')).body;
    const created = await s.call<{ id: string }>('POST', '/v1/migrations', {
      name: 'here',
      sourceHost: hosts[0]!.id,
      destinationHost: hosts[0]!.id,
      store: stores[0]!.id,
      vms: [{ name: 'db', disks: [{ id: 'l0' }], ...harness.sides(s, ['l0']) }],
      cutover: { budget: '10s', window: '3m', verify: 'full' },
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    const id = created.body.id;
    for (const step of ['validate', 'start']) {
      const reply = await s.call('POST', `/v1/migrations/${id}/${step}`);
      expect(reply.status, JSON.stringify(reply.body)).toBe(200);
    }
    expect((await s.call('POST', `/v1/migrations/${id}/cutover`, {})).status).toBe(200);
    await expect.poll(async () => (await s.call<{ state: string }>('GET', `/v1/migrations/${id}`)).body.state, { timeout: 120_000 }).toBe('done');
    await expectMoved(s, id, ['l0']);
  } finally {
    child.kill('SIGTERM');
    expect((await done).code).toBe(0);
  }
});

it('transport seed: the source agent exports the disks onto a device while the guest writes, the device is shipped and imported at the destination, the changes since catch up, and the cutover verifies', async () => {
  const disks = ['s0'];
  const s = await harness.site('seed', disks);
  const device = join(s.base, 'seed-device');
  const id = await createMigration(s, disks, { transport: { mode: 'seed', device } });
  expect((await s.call('POST', `/v1/migrations/${id}/seed/arrived`, { device })).status).toBe(409); // not started: no seed on its way
  expect((await s.call('POST', `/v1/migrations/${id}/start`)).status).toBe(200);
  await expect.poll(async () => (await s.call<{ seed?: { phase: string } }>('GET', `/v1/migrations/${id}/progress`)).body.seed?.phase, { timeout: 60_000 }).toBe('shipping');
  expect((await s.call<{ seed?: { seedId?: string } }>('GET', `/v1/migrations/${id}`)).body.seed?.seedId).toMatch(/^[0-9a-f]+$/);
  const waiting = (await s.call<{ state: string; seed: { phase: string }; disks: Array<{ source: { parked: boolean } }> }>('GET', `/v1/migrations/${id}/progress`)).body;
  expect(waiting).toMatchObject({ state: 'copying', seed: { phase: 'shipping' }, disks: [{ source: { parked: true } }] });

  // By courier: the device arrives at the destination host, elsewhere.
  const arrived = join(s.base, 'arrived');
  await cp(device, arrived, { recursive: true });
  expect(issues(await s.call('POST', `/v1/migrations/${id}/seed/arrived`, { device: 'relative/dir' }))).toEqual(['body.device: expected an absolute path, received "relative/dir"']);
  expect((await s.call('POST', `/v1/migrations/${id}/seed/arrived`, { device: arrived })).body).toMatchObject({ seed: { arrivedDevice: arrived } });
  const ready = await until(s, id, 'ready');
  expect(ready.state, ready.error).toBe('ready');
  expect((await s.call('POST', `/v1/migrations/${id}/cutover`, {})).status).toBe(200);
  const done = await until(s, id, 'done');
  expect(done.state, done.error).toBe('done');
  await expectMoved(s, id, disks);
  const log = await events(s, id);
  expect(log.filter((e) => /^base copy/.test(e))).toEqual([]);
  expect(log).toEqual(
    expect.arrayContaining([
      expect.stringMatching(/^seed export of 1 disk\(s\) onto .* started/),
      expect.stringMatching(/^seed \S+ exported onto/),
      `the seed arrived at the destination host: ${arrived}`,
      expect.stringMatching(/^seed \S+ imported into the store/),
      'db/s0 streams again (a resync ships what changed)',
    ]),
  );
});

/** The issues of a 400, as `path: message` lines. */
function issues(reply: { status: number; body: unknown }): string[] {
  expect(reply.status, JSON.stringify(reply.body)).toBe(400);
  return (reply.body as { error: { issues: Array<{ path: string; message: string }> } }).error.issues.map((i) => `${i.path}: ${i.message}`);
}
