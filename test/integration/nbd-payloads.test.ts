/**
 * WRITE payloads reach the disk exactly however the client's bytes are cut on the way: the
 * server hands a payload that arrived in a few socket reads to the disk as those pieces
 * (pwritev, no copy), and copies one that trickles in over many reads into one buffer as it
 * comes. Both paths, and everything in between, against a real image file.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { NbdTestClient } from '../support/nbd-client.js';
import { serveImage, sha256, type ServedImage } from '../support/nbd-tools.js';
import { createPrng, fillRandom } from '../support/random-workload.js';

const K = 1024;
let served: ServedImage | undefined;
afterEach(async () => {
  await served?.stop();
  served = undefined;
});

/** Sends each request's bytes in pieces of random sizes up to maxPiece, a pause after each. */
function sendInPieces(client: NbdTestClient, random: () => number, maxPiece: number): void {
  let chain = Promise.resolve();
  client.send = (bytes) => {
    chain = chain.then(async () => {
      for (let at = 0; at < bytes.length; ) {
        const piece = 1 + Math.floor(random() * maxPiece);
        client.socket.write(bytes.subarray(at, at + piece));
        at += piece;
        await sleep(1); // the server reads each piece on its own
      }
    });
  };
}

describe('NBD WRITE payloads split across socket reads', () => {
  for (const [name, maxPiece, seed] of [
    ['a few pieces each (given to the disk as pieces)', 48 * K, 1],
    ['dozens of small pieces each (copied together as they come)', 700, 2],
  ] as const) {
    it(`are written exactly: ${name}`, async () => {
      served = await serveImage({ sizeBytes: 4 * 1024 * K });
      const expected = await readFile(served.imagePath);
      const client = await NbdTestClient.connect({ path: served.socketPath });
      const random = createPrng(seed);
      sendInPieces(client, random, maxPiece);
      // All pipelined, so pieces of several requests share reads; each request has its own
      // 160 KiB slot (writes in flight together may land in any order, so none overlap).
      const slotBytes = 160 * K;
      const writes = [];
      for (let i = 0; i < 24; i++) {
        const length = 512 * (1 + Math.floor(random() * 256)); // 512 B to 128 KiB
        const offset = i * slotBytes + 512 * Math.floor(random() * ((slotBytes - length) / 512 + 1));
        const data = Buffer.alloc(length);
        fillRandom(data, random);
        data.copy(expected, offset);
        writes.push(client.write(offset, data, i % 5 === 0 ? 1 /* FUA */ : 0));
      }
      expect((await Promise.all(writes)).map((r) => r.error)).toEqual(writes.map(() => 0));
      await client.flush();
      expect(sha256(await readFile(served.imagePath))).toBe(sha256(expected));
      await client.disconnect();
    });
  }
});
