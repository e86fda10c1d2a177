import { describe, expect, it } from 'vitest';
import { DirtyBitmap } from '../../src/delta/dirty-bitmap.js';
import { isFerryError } from '../../src/core/index.js';
import { createPrng } from '../support/random-workload.js';

const K = 1024;

describe('DirtyBitmap', () => {
  it('marks every block a range touches, and nothing for an empty range', () => {
    const bitmap = new DirtyBitmap(1024 * K, 64 * K);
    bitmap.mark(64 * K - 512, 1024); // straddles blocks 0 and 1
    bitmap.mark(5 * 64 * K, 0);
    expect(bitmap.dirtyCount).toBe(2);
    expect([0, 1, 2].map((b) => bitmap.isDirty(b))).toEqual([true, true, false]);
    bitmap.mark(0, 512); // already dirty
    expect(bitmap.dirtyCount).toBe(2);
    expect(() => bitmap.mark(1024 * K - 512, 1024)).toThrow(/outside the disk/);
  });

  it('takeRuns returns contiguous runs lowest first, clears them, and respects maxBytes', () => {
    const bitmap = new DirtyBitmap(1024 * K, 64 * K); // 16 blocks
    bitmap.mark(0, 3 * 64 * K); // blocks 0-2
    bitmap.mark(5 * 64 * K, 1); // block 5
    bitmap.mark(9 * 64 * K, 4 * 64 * K); // blocks 9-12
    const first = bitmap.takeRuns(4 * 64 * K);
    expect(first).toEqual([
      { offset: 0, length: 3 * 64 * K },
      { offset: 5 * 64 * K, length: 64 * K },
    ]);
    expect(bitmap.dirtyCount).toBe(4);
    expect(bitmap.isDirty(0)).toBe(false);
    // A write after the take sets the bit again (invariant 4).
    bitmap.mark(64 * K, 512);
    expect(bitmap.takeRuns(2 * 64 * K)).toEqual([
      { offset: 64 * K, length: 64 * K },
      { offset: 9 * 64 * K, length: 64 * K },
    ]);
    expect(bitmap.takeRuns(100 * 64 * K)).toEqual([{ offset: 10 * 64 * K, length: 3 * 64 * K }]);
    expect(bitmap.dirtyCount).toBe(0);
    expect(bitmap.takeRuns(64 * K)).toEqual([]);
  });

  it('takes at least one block even when maxBytes is smaller, and clips the last block to the disk', () => {
    const bitmap = new DirtyBitmap(100 * K, 64 * K); // 2 blocks, the second 36 KiB
    bitmap.markAll();
    expect(bitmap.dirtyBytes).toBe(100 * K);
    expect(bitmap.takeRuns(512)).toEqual([{ offset: 0, length: 64 * K }]);
    expect(bitmap.takeRuns(1024 * K)).toEqual([{ offset: 64 * K, length: 36 * K }]);
  });

  it('matches a naive model under random marks and takes, and survives serialize/deserialize', () => {
    for (const seed of [1, 2, 3, 4]) {
      const random = createPrng(seed);
      const blockSize = 4 * K;
      const size = 777 * blockSize - 512 * 3;
      const bitmap = new DirtyBitmap(size, blockSize);
      const model = new Array<boolean>(bitmap.blockCount).fill(false);
      for (let round = 0; round < 300; round++) {
        if (random() < 0.7) {
          const offset = Math.floor(random() * size);
          const length = Math.min(size - offset, Math.floor(random() * 40 * blockSize));
          bitmap.mark(offset, length);
          if (length > 0) for (let b = Math.floor(offset / blockSize); b <= Math.floor((offset + length - 1) / blockSize); b++) model[b] = true;
        } else {
          const maxBytes = (1 + Math.floor(random() * 50)) * blockSize;
          const runs = bitmap.takeRuns(maxBytes);
          let total = 0;
          let lastEnd = -1;
          const takenModel: number[] = [];
          for (let b = 0; b < model.length && takenModel.length < maxBytes / blockSize; b++) if (model[b]) takenModel.push(b);
          const takenReal: number[] = [];
          for (const run of runs) {
            expect(run.offset).toBeGreaterThan(lastEnd); // sorted, and runs are maximal
            lastEnd = run.offset + run.length;
            total += run.length;
            for (let b = run.offset / blockSize; b * blockSize < run.offset + run.length; b++) takenReal.push(b);
          }
          expect(takenReal).toEqual(takenModel);
          expect(total).toBeLessThanOrEqual(maxBytes);
          for (const b of takenModel) model[b] = false;
        }
        expect(bitmap.dirtyCount).toBe(model.filter(Boolean).length);
      }
      const copy = DirtyBitmap.deserialize(bitmap.serialize());
      expect(copy.dirtyCount).toBe(bitmap.dirtyCount);
      for (let b = 0; b < model.length; b++) expect(copy.isDirty(b)).toBe(model[b]);
    }
  });

  it('uses about one bit per block and rejects damaged serialized bytes', () => {
    const bitmap = new DirtyBitmap(1024 * 1024 * K, 64 * K); // 1 GiB: 16384 blocks
    expect(bitmap.serialize().length).toBeLessThan(16384 / 8 + 64);
    bitmap.mark(12345 * 512, 512);
    const bytes = bitmap.serialize();
    bytes[bytes.length - 1] = bytes[bytes.length - 1]! ^ 0x01;
    let error: unknown;
    try {
      DirtyBitmap.deserialize(bytes);
    } catch (err) {
      error = err;
    }
    expect(isFerryError(error, 'checksum-mismatch')).toBe(true);
  });

  it('clear() forgets everything', () => {
    const bitmap = new DirtyBitmap(1024 * K);
    bitmap.markAll();
    bitmap.clear();
    expect(bitmap.dirtyCount).toBe(0);
    expect(bitmap.takeRuns(1024 * K)).toEqual([]);
  });
});
