import { afterAll, beforeAll, expect, it } from 'vitest';
import { closeSync, openSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFully, writeFullySync } from '../../src/core/index.js';
import { createPrng, fillRandom } from '../support/random-workload.js';
import { tempDir } from '../support/temp.js';

let dir: { path: string; cleanup: () => Promise<void> };
beforeAll(async () => (dir = await tempDir()));
afterAll(async () => dir.cleanup());

// Writes go to the kernel in pieces of at most 512 KiB: buffers and lists of buffers larger
// than that, and pieces that straddle a cut, must land whole and in place.
const seed = Number(process.env.FERRY_TEST_SEED ?? 41);
const random = createPrng(seed);

function randomPieces(): Buffer[] {
  const pieces: Buffer[] = [];
  for (let i = 0; i < 40; i++) {
    const size = i % 7 === 0 ? 700 * 1024 + Math.floor(random() * 400 * 1024) : 1 + Math.floor(random() * 96 * 1024);
    const piece = Buffer.alloc(size);
    fillRandom(piece, random);
    pieces.push(piece);
  }
  return pieces;
}

it(`writes large buffers and buffer lists whole, async and sync (seed ${seed})`, async () => {
  const at = 12345;
  for (const form of ['async', 'sync'] as const) {
    const pieces = randomPieces();
    const whole = Buffer.concat(pieces);
    for (const data of [whole, pieces]) {
      const path = join(dir.path, `${form}-${Array.isArray(data) ? 'list' : 'one'}.bin`);
      const fd = openSync(path, 'w');
      if (form === 'async') await writeFully(fd, data, at);
      else writeFullySync(fd, data, at);
      closeSync(fd);
      const file = await readFile(path);
      expect(file.byteLength).toBe(at + whole.byteLength);
      expect(file.subarray(at).equals(whole)).toBe(true);
    }
  }
});
