/**
 * Multi-conn: several connections to one export share one device, so writes from concurrent
 * clients all land, and what one connection wrote and flushed, another reads.
 */
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { NbdTestClient } from '../support/nbd-client.js';
import { requireTool, run, serveImage, sha256, sha256File, spawnTool, type ServedImage } from '../support/nbd-tools.js';

const MiB = 1024 * 1024;
let served: ServedImage | undefined;

beforeAll(async () => {
  for (const tool of ['qemu-io', 'nbdcopy']) await requireTool(tool);
});

afterEach(async () => {
  await served?.stop();
  served = undefined;
});

describe('NBD multi-conn', () => {
  it('two qemu-io clients writing disjoint ranges at once: the image is exactly both', async () => {
    served = await serveImage({ sizeBytes: 32 * MiB });
    const expected = await readFile(served.imagePath);
    const scripts: string[][] = [[], []];
    // Interleaved 64 KiB stripes: client 0 owns even stripes, client 1 odd ones.
    for (let stripe = 0; stripe < 256; stripe++) {
      const owner = stripe % 2;
      const offset = stripe * 128 * 1024 + (stripe % 7) * 512;
      const pattern = (stripe * 37 + 1) & 0xff;
      scripts[owner]!.push('-c', `aio_write -P ${pattern} ${offset} 65536`);
      expected.fill(pattern, offset, offset + 65536);
    }
    const runs = scripts.map((cmds) => spawnTool('qemu-io', ['-f', 'raw', served!.uri, ...cmds, '-c', 'aio_flush', '-c', 'flush']));
    const results = await Promise.all(runs);
    for (const r of results) {
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout + r.stderr).not.toMatch(/error|failed/i);
    }
    expect(await sha256File(served.imagePath)).toBe(sha256(expected));
    expect(served.server.stats().peakInflightRequests).toBeGreaterThan(1);
  });

  it('a write acknowledged on one connection is read back on another', async () => {
    served = await serveImage({ sizeBytes: 8 * MiB });
    const a = await NbdTestClient.connect({ path: served.socketPath });
    const b = await NbdTestClient.connect({ path: served.socketPath, structured: false });
    for (let i = 0; i < 50; i++) {
      const data = randomBytes(4096 + i);
      const offset = i * 65536 + i;
      expect((await a.write(offset, data, 1)).error).toBe(0);
      const back = await b.read(offset, data.length);
      expect(back.error).toBe(0);
      expect(sha256(back.data!)).toBe(sha256(data));
    }
    await a.disconnect();
    await b.disconnect();
  });

  it('nbdcopy with 4 connections and 32 requests each writes a random image exactly', async () => {
    served = await serveImage({ sizeBytes: 64 * MiB, zero: true });
    const source = join(served.dir, 'source.img');
    const sourceBytes = randomBytes(64 * MiB);
    await writeFile(source, sourceBytes);
    await run('nbdcopy', ['--connections=4', '--threads=4', '--requests=32', '--request-size=65536', source, served.uri]);
    expect(await sha256File(served.imagePath)).toBe(sha256(sourceBytes));
    expect(served.server.stats().connectionsTotal).toBe(4);
  });
});
