/**
 * `ferry agent` as its own process, the way an operator starts it: the control API over TLS
 * on loopback with a bearer token and a certificate generated into the state dir on the
 * first start. A client pins the printed fingerprint; a restart reuses the certificate; the
 * unix control socket still answers; a token file others may read is refused (exit 2).
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { ChildProcess } from 'node:child_process';
import { chmod, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FilterControlClient } from '../../src/api/index.js';
import { ferry, startFerry } from '../support/cli.js';
import { startFilterProcess, type FilterProcess } from '../support/filter-process.js';
import { makeSparseImage } from '../support/images.js';
import { tempDir } from '../support/temp.js';

const token = 'e2e-3b9f0c4d8a7e6f5a4b3c2d1e0f9a8b7c';
let dir: { path: string; cleanup: () => Promise<void> };
let image: string;
let stateDir: string;
let store: string;
let tokenFile: string;
const running: ChildProcess[] = [];

beforeAll(async () => {
  dir = await tempDir('ferry-agent-');
  image = join(dir.path, 'd0.img');
  stateDir = join(dir.path, 'state');
  store = `file:${join(dir.path, 'store')}`;
  tokenFile = join(dir.path, 'token');
  await makeSparseImage(image, 4 * 1024 * 1024, 3, 0.5);
  await writeFile(tokenFile, `${token}\n`, { mode: 0o600 });
});
afterAll(async () => {
  for (const child of running) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await dir.cleanup();
});

async function startAgent(): Promise<FilterProcess & { url: string; fingerprint: string }> {
  const agent = await startFilterProcess({ command: 'agent', image, stateDir, store, args: ['--listen', '127.0.0.1:0', '--token-file', tokenFile] });
  running.push(agent.child);
  const url = /^agent (https:\/\/127\.0\.0\.1:\d+)$/m.exec(agent.stdout())?.[1];
  const fingerprint = /^fingerprint (sha256:[0-9a-f]{64})$/m.exec(agent.stdout())?.[1];
  if (!url || !fingerprint) throw new Error(`ferry agent did not print its address and fingerprint: ${agent.stdout()}`);
  return { ...agent, url, fingerprint };
}

it('serves its control API over TLS to a client pinning the printed fingerprint, and reuses its certificate', async () => {
  const first = await startAgent();
  const client = new FilterControlClient(first.url, { token, fingerprint: first.fingerprint });
  expect((await client.listDisks()).disks.map((d) => d.id)).toEqual(['d0']);
  // The unix control socket answers as before, without a token.
  expect((await new FilterControlClient(first.control).disk('d0')).id).toBe('d0');
  // The generated key is the agent's alone.
  expect((await stat(join(stateDir, 'agent-key.pem'))).mode & 0o777).toBe(0o600);
  await expect(new FilterControlClient(first.url, { token: 'not-the-token-0123456789', fingerprint: first.fingerprint }).listDisks()).rejects.toMatchObject({ code: 'unauthorized' });
  expect(first.stderr()).toMatch(/generated the TLS certificate/);
  expect(await first.stop()).toMatchObject({ code: 0 });
  expect(first.stderr()).not.toContain(token);

  const second = await startAgent();
  expect(second.fingerprint).toBe(first.fingerprint);
  expect(second.stderr()).not.toMatch(/generated the TLS certificate/);
  expect((await new FilterControlClient(second.url, { token, fingerprint: first.fingerprint }).disk('d0')).id).toBe('d0');
  const result = await second.stop();
  expect(result.code).toBe(0);
  expect(result.stderr).not.toContain(token);
});

it('prints its address and fingerprint in --json too', async () => {
  const { child, done } = startFerry(['agent', '--disk', `d0=${image}`, '--state-dir', stateDir, '--store', store, '--listen', '127.0.0.1:0', '--token-file', tokenFile, '--json']);
  running.push(child);
  let stdout = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  for (let i = 0; i < 300 && !stdout.includes('\n'); i++) await new Promise((r) => setTimeout(r, 50));
  const printed = JSON.parse(stdout) as { exports: Array<{ id: string }>; control: string; agent: string; fingerprint: string };
  expect(printed).toMatchObject({ exports: [{ id: 'd0' }], control: join(stateDir, 'control.sock'), agent: expect.stringMatching(/^https:\/\/127\.0\.0\.1:\d+$/), fingerprint: expect.stringMatching(/^sha256:[0-9a-f]{64}$/) });
  expect((await new FilterControlClient(printed.agent, { token, fingerprint: printed.fingerprint }).listDisks()).disks).toHaveLength(1);
  child.kill('SIGTERM');
  expect((await done).code).toBe(0);
});

it('refuses a token file that group or others may read, naming it and its mode (exit 2)', async () => {
  const open = join(dir.path, 'open-token');
  await writeFile(open, `${token}\n`);
  await chmod(open, 0o644);
  const result = await ferry(['agent', '--disk', `d0=${image}`, '--state-dir', stateDir, '--store', store, '--listen', '127.0.0.1:0', '--token-file', open]);
  expect(result.code).toBe(2);
  expect(result.stderr).toContain(`--token-file ${open} has mode 0644`);
  expect(result.stderr).not.toContain(token);

  const missing = await ferry(['agent', '--disk', `d0=${image}`, '--state-dir', stateDir, '--store', store, '--listen', '127.0.0.1:0']);
  expect(missing.code).toBe(2);
  expect(missing.stderr).toMatch(/--token-file is required with --listen/);
});
