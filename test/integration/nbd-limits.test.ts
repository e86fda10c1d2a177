/**
 * Per-connection memory bounds: a client that pipelines far more than the limits, and does not
 * read its replies, must not make the server hold more than the configured bytes in flight;
 * once it reads, every reply arrives, correct.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryBudget } from '../../src/nbd/index.js';
import { NbdTestClient } from '../support/nbd-client.js';
import { serveImage, sha256, type ServedImage } from '../support/nbd-tools.js';
import { readFile } from 'node:fs/promises';

const MiB = 1024 * 1024;
let served: ServedImage | undefined;

afterEach(async () => {
  await served?.stop();
  served = undefined;
});

describe('NBD server bounds work in flight per connection', () => {
  it('stops reading while over the bounds; 256 MiB of pipelined reads never holds more than the limit', async () => {
    const limits = { maxInflightRequests: 16, maxInflightBytes: 4 * MiB, maxQueuedReplyBytes: 4 * MiB };
    served = await serveImage({ sizeBytes: 32 * MiB, server: { limits } });
    const image = await readFile(served.imagePath);
    const client = await NbdTestClient.connect({ path: served.socketPath });
    // Stop reading replies: the server's replies back up into its socket.
    client.socket.pause();
    const count = 256;
    const replies = Array.from({ length: count }, (_, i) => client.read((i % 32) * MiB, MiB));
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const stalled = served.server.stats();
    // Far fewer than 1024 were started: the server stopped reading the socket.
    expect(stalled.reads).toBeLessThan(count / 4);
    expect(stalled.peakInflightRequests).toBeLessThanOrEqual(limits.maxInflightRequests);
    // One request may cross the byte bound (it is checked before each header).
    expect(stalled.peakInflightBytes).toBeLessThanOrEqual(limits.maxInflightBytes + MiB);

    client.socket.resume();
    const results = await Promise.all(replies);
    results.forEach((r, i) => {
      expect(r.error).toBe(0);
      expect(sha256(r.data!)).toBe(sha256(image.subarray((i % 32) * MiB, (i % 32 + 1) * MiB)));
    });
    expect(served.server.stats().reads).toBe(count);
    expect(served.server.stats().peakInflightBytes).toBeLessThanOrEqual(limits.maxInflightBytes + MiB);
    await client.disconnect();
  });

  it('bounds the memory of all connections together: many clients that do not read their replies hold at most the server\'s budget', async () => {
    const budget = new MemoryBudget(8 * MiB);
    served = await serveImage({ sizeBytes: 32 * MiB, server: { budget } });
    const image = await readFile(served.imagePath);
    const clients = await Promise.all(Array.from({ length: 6 }, () => NbdTestClient.connect({ path: served!.socketPath })));
    for (const c of clients) c.socket.pause();
    const asked = clients.flatMap((c, k) => Array.from({ length: 24 }, (_, i) => ({ offset: ((i + k) % 32) * MiB, reply: c.read(((i + k) % 32) * MiB, MiB) })));
    // Each connection alone could hold 64 MiB; together they stop at the budget.
    await expect.poll(() => served!.server.stats().budgetUsedBytes).toBeGreaterThanOrEqual(budget.limitBytes);
    const stalled = served.server.stats();
    expect(stalled.reads).toBeLessThan(asked.length);
    // One request may cross it (the budget is checked before each header), with reply headers.
    const bound = budget.limitBytes + MiB + 4096;
    expect(stalled.peakBudgetUsedBytes).toBeLessThanOrEqual(bound);

    for (const c of clients) c.socket.resume();
    for (const { offset, reply } of asked) {
      const r = await reply;
      expect(r.error).toBe(0);
      expect(sha256(r.data!)).toBe(sha256(image.subarray(offset, offset + MiB)));
    }
    expect(served.server.stats().peakBudgetUsedBytes).toBeLessThanOrEqual(bound);
    for (const c of clients) await c.disconnect();
    await expect.poll(() => served!.server.stats().budgetUsedBytes).toBe(0);
  });

  it('bounds pipelined writes the same way and applies them all', async () => {
    const limits = { maxInflightRequests: 8, maxInflightBytes: 2 * MiB, maxQueuedReplyBytes: 2 * MiB };
    served = await serveImage({ sizeBytes: 16 * MiB, server: { limits } });
    const expected = await readFile(served.imagePath);
    const client = await NbdTestClient.connect({ path: served.socketPath });
    const writes = [];
    for (let i = 0; i < 64; i++) {
      const data = Buffer.alloc(256 * 1024, (i * 7 + 3) & 0xff);
      const offset = i * 256 * 1024;
      data.copy(expected, offset);
      writes.push(client.write(offset, data));
    }
    const results = await Promise.all(writes);
    expect(results.every((r) => r.error === 0)).toBe(true);
    await client.flush();
    await client.disconnect();
    expect(served.server.stats().peakInflightRequests).toBeLessThanOrEqual(8);
    expect(served.server.stats().peakInflightBytes).toBeLessThanOrEqual(2 * MiB + 256 * 1024);
    expect(served.server.stats().bytesWritten).toBe(64 * 256 * 1024);
    expect(sha256(await readFile(served.imagePath))).toBe(sha256(expected));
  });
});
