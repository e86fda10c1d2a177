/**
 * Test disk images: sparse files with random data, zero ranges and repeated regions, made
 * from a seed so that a failure can be reproduced.
 */
import { createHash } from 'node:crypto';
import { open, readFile } from 'node:fs/promises';
import { createPrng, fillRandom } from './random-workload.js';

/**
 * Writes a sparse image of `sizeBytes`: about `dataFraction` of it random extents (sizes
 * from 512 B to 3 MiB, at 512-byte offsets), some of them copies of each other so chunks
 * repeat, the rest holes.
 */
export async function makeSparseImage(path: string, sizeBytes: number, seed: number, dataFraction = 0.4): Promise<void> {
  const random = createPrng(seed);
  const file = await open(path, 'w');
  try {
    await file.truncate(sizeBytes);
    let written = 0;
    let previous: { data: Buffer } | undefined;
    while (written < sizeBytes * dataFraction) {
      const length = Math.min(sizeBytes, 512 * Math.ceil((random() * 3 * 1024 * 1024) / 512));
      const offset = 512 * Math.floor((random() * (sizeBytes - length)) / 512);
      const repeat = previous && previous.data.length === length;
      const data = repeat ? previous!.data : filled(random, length);
      await file.write(data, 0, length, offset);
      previous = { data };
      written += length;
    }
    // A repeated, chunk-aligned 8 MiB region makes whole chunks repeat within the disk.
    if (sizeBytes >= 32 * 1024 * 1024) {
      const block = filled(random, 4 * 1024 * 1024);
      await file.write(block, 0, block.length, 0);
      await file.write(block, 0, block.length, 16 * 1024 * 1024);
    }
  } finally {
    await file.close();
  }
}

export async function sha256File(path: string): Promise<string> {
  return createHash('sha256').update(await readFile(path)).digest('hex');
}

function filled(random: () => number, length: number): Buffer {
  const buf = Buffer.allocUnsafe(length);
  fillRandom(buf, random);
  return buf;
}
