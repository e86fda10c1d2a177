/**
 * A control request allowed to take as long as it needs (a final drain behind a slow store,
 * a full hash of a large disk: timeoutMs 0) is not cut off by a socket timeout of its own:
 * Node's global HTTP agent would end a request silent for 5 s.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { FilterControlClient, serveOnUnixSocket } from '../../src/api/index.js';
import { tempDir } from '../support/temp.js';

let dir: Awaited<ReturnType<typeof tempDir>>;
beforeAll(async () => (dir = await tempDir('ferry-slow-control-')));
afterAll(async () => dir.cleanup());

it('waits for a reply that takes longer than 5 s when asked to wait without limit', async () => {
  const path = join(dir.path, 'control.sock');
  const server = await serveOnUnixSocket(async () => {
    await new Promise((r) => setTimeout(r, 6_000));
    return new Response(JSON.stringify({ finalSeq: 7, bytes: 0 }), { headers: { 'content-type': 'application/json' } });
  }, path);
  try {
    const client = new FilterControlClient(path);
    await expect(client.request('POST', '/v1/disks/d0/drain', { owner: 'test' }, { timeoutMs: 0 })).resolves.toEqual({ finalSeq: 7, bytes: 0 });
  } finally {
    await server.close();
  }
}, 20_000);
