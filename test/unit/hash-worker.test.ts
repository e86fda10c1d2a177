/**
 * The volume hasher copies pieces that are not in shared memory into a ring of shared memory
 * that its worker reads in place: the digests must be those of the bytes given, across the
 * ring's wrap-around, with shared pieces, pieces too large for the room left, and one digest
 * after another.
 *
 * The chunk hasher sends the chunks asked in one burst in one message: each answer must be
 * its own chunk's, in bursts of any size, spread over several workers.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { ChunkHasher, VolumeHasher, sha256Hex } from '../../src/core/index.js';
import { createPrng, fillRandom } from '../support/random-workload.js';

const MiB = 1024 * 1024;
const seed = Number(process.env.FERRY_TEST_SEED ?? 11);
let hasher: VolumeHasher;
beforeAll(() => {
  hasher = new VolumeHasher();
});
afterAll(async () => hasher.close());

it(`digests volumes given in pieces of every kind, the ring wrapping around (seed ${seed})`, async () => {
  const random = createPrng(seed);
  for (let volume = 0; volume < 3; volume++) {
    const expected = createHash('sha256');
    let given = 0;
    while (given < 40 * MiB) {
      const size = random() < 0.1 ? 20 * MiB + Math.floor(random() * MiB) : 1 + Math.floor(random() * 3 * MiB);
      const piece = random() < 0.2 ? Buffer.from(new SharedArrayBuffer(size)) : Buffer.alloc(size);
      fillRandom(piece, random);
      expected.update(piece);
      hasher.update(piece);
      given += size;
      // A piece not in shared memory is copied at once: the caller may reuse it.
      if (!(piece.buffer instanceof SharedArrayBuffer)) piece.fill(0);
      // Up to 48 MiB waiting: more than the ring holds, so some pieces find no room in it.
      while (given - hasher.hashedBytes > 48 * MiB) await new Promise<void>((resolve) => (hasher.onHashed = resolve));
    }
    expect(await hasher.digest()).toBe(expected.digest('hex'));
  }
});

it(`answers each chunk of a burst with its own hash, over several workers (seed ${seed})`, async () => {
  const random = createPrng(seed);
  const chunks = new ChunkHasher(2);
  try {
    for (let round = 0; round < 20; round++) {
      // One shared buffer holds the round's chunks side by side.
      const burst = 1 + Math.floor(random() * 24);
      const memory = Buffer.from(new SharedArrayBuffer(burst * 64 * 1024));
      fillRandom(memory, random);
      const asked = Array.from({ length: burst }, (_, i) => memory.subarray(i * 64 * 1024, i * 64 * 1024 + 1 + Math.floor(random() * 64 * 1024)));
      const answers = await Promise.all(asked.map((chunk) => chunks.hash(chunk)));
      expect(answers).toEqual(asked.map((chunk) => sha256Hex(chunk)));
    }
  } finally {
    await chunks.close();
  }
});
