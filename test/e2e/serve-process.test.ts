/**
 * `ferry serve` as its own process, the way an operator runs it: a token made by `ferry
 * serve token create`, the service on a free loopback port, /healthz and authenticated
 * routes over HTTP, then SIGTERM: a clean stop with exit code 0, and no token in its logs.
 */
import type { ChildProcess } from 'node:child_process';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ferry, startFerry } from '../support/cli.js';
import { tempDir } from '../support/temp.js';

let dir: Awaited<ReturnType<typeof tempDir>>;
const running: ChildProcess[] = [];

beforeAll(async () => {
  dir = await tempDir('ferry-serve-');
});
afterAll(async () => {
  for (const child of running) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await dir.cleanup();
});

it('serves the wizard API with a token from `ferry serve token create`, and stops cleanly on SIGTERM', async () => {
  const db = join(dir.path, 'state', 'ferry.db');
  const made = await ferry(['serve', 'token', 'create', 'e2e', '--db', db]);
  expect(made.code, made.stderr).toBe(0);
  const token = made.stdout.trim();
  expect(token).toMatch(/^ferry_[A-Za-z0-9_-]{43}$/);
  expect(made.stderr).toMatch(/shown only this once/);
  expect((await stat(db)).mode & 0o777).toBe(0o600);

  const { child, done } = startFerry(['serve', '--listen', '127.0.0.1:0', '--db', db]);
  running.push(child);
  let stdout = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  let exited = false;
  void done.then(() => (exited = true));
  for (let i = 0; i < 200 && !/^db /m.test(stdout); i++) {
    if (exited) throw new Error(`ferry serve exited early: ${(await done).stderr}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const url = /^url (http:\/\/127\.0\.0\.1:\d+)$/m.exec(stdout)?.[1];
  expect(url, stdout).toBeTruthy();
  expect(stdout).toContain(`openapi ${url}/v1/openapi.json`);

  const health = await fetch(`${url}/healthz`);
  expect(health.status).toBe(200);
  expect(await health.json()).toEqual({ status: 'ok' });

  expect((await fetch(`${url}/v1/hosts`)).status).toBe(401);
  expect((await fetch(`${url}/v1/hosts`, { headers: { authorization: 'Bearer not-a-token' } })).status).toBe(401);

  const auth = { authorization: `Bearer ${token}` };
  // On one machine it needs nothing else: its own agent is the host "local" and its store the store "local".
  const hosts = (await (await fetch(`${url}/v1/hosts`, { headers: auth })).json()) as { hosts: Array<{ name: string; role: string; agent: { url: string }; inventory?: unknown }> };
  expect(hosts.hosts).toEqual([expect.objectContaining({ name: 'local', role: 'both', agent: expect.objectContaining({ url: join(dir.path, 'state', 'local-agent', 'control.sock') }), inventory: { vms: [] } })]);
  const before = (await (await fetch(`${url}/v1/stores`, { headers: auth })).json()) as { stores: Array<{ id: string; name: string; url: string }> };
  expect(before.stores).toEqual([expect.objectContaining({ name: 'local', url: `file:${join(dir.path, 'state', 'store')}` })]);
  const store = await fetch(`${url}/v1/stores`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify({ name: 'another', url: `file:${join(dir.path, 'store')}` }) });
  expect(store.status).toBe(201);
  const { id } = (await store.json()) as { id: string };
  const checked = await fetch(`${url}/v1/stores/${id}/check`, { method: 'POST', headers: auth });
  expect(((await checked.json()) as { lastCheck: { reachable: boolean } }).lastCheck.reachable).toBe(true);
  const list = await fetch(`${url}/v1/stores`, { headers: auth });
  expect(list.status).toBe(200);
  expect(((await list.json()) as { stores: Array<{ id: string }> }).stores.map((s) => s.id)).toEqual([before.stores[0]!.id, id]);

  // A second service on the same database is refused while this one runs.
  const second = await ferry(['serve', '--listen', '127.0.0.1:0', '--db', db]);
  expect(second.code).toBe(8);
  expect(second.stderr).toMatch(/in use by pid \d+ \(ferry serve\)/);

  child.kill('SIGTERM');
  const result = await done;
  expect(result.signal).toBeNull();
  expect(result.code, result.stderr).toBe(0);
  expect(result.stderr).toMatch(/service stopped cleanly/);
  expect(result.stderr).toMatch(/POST \/v1\/stores 201 .*token=e2e/);
  expect(result.stderr).not.toContain(token);

  const tokens = await ferry(['serve', 'token', 'list', '--db', db, '--json']);
  expect(tokens.code).toBe(0);
  const [listed] = JSON.parse(tokens.stdout) as Array<{ name: string; lastUsedAt: string | null }>;
  expect(listed).toMatchObject({ name: 'e2e' });
  expect(listed!.lastUsedAt).not.toBeNull();
});
