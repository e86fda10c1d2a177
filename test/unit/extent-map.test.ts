/**
 * ExtentMap: "last write wins" coalescing of a sealed segment's records. Pieces come out in
 * offset order without overlap, each naming the record (seq, entry) its bytes come from.
 */
import { describe, expect, it } from 'vitest';
import { ExtentMap, type Piece } from '../../src/delta/extent-map.js';
import { createPrng } from '../support/random-workload.js';

function w(offset: number, length: number, seq: number, entry = seq): Piece {
  return { offset, length, kind: 'write', seq, entry };
}
function z(offset: number, length: number, seq: number, entry = seq): Piece {
  return { offset, length, kind: 'zero', seq, entry };
}
function mapOf(...pieces: Piece[]): ExtentMap {
  const map = new ExtentMap();
  for (const piece of pieces) map.put(piece);
  return map;
}

describe('ExtentMap', () => {
  it('keeps disjoint pieces in offset order whatever order they are put in', () => {
    expect(mapOf(w(100, 10, 1), w(0, 10, 2), w(50, 5, 3)).pieces()).toEqual([w(0, 10, 2), w(50, 5, 3), w(100, 10, 1)]);
  });

  it('splits an older piece around a newer one inside it, both halves naming the older record', () => {
    const map = mapOf(w(0, 100, 1, 7), w(40, 10, 2, 8));
    expect(map.pieces()).toEqual([w(0, 40, 1, 7), w(40, 10, 2, 8), w(50, 50, 1, 7)]);
    expect(map.size).toBe(3);
  });

  it('replaces the pieces a newer one covers and trims those it covers in part', () => {
    const map = mapOf(w(0, 10, 1), w(10, 10, 2), z(20, 10, 3), w(30, 10, 4), w(40, 10, 5));
    map.put(w(5, 30, 6));
    expect(map.pieces()).toEqual([w(0, 5, 1), w(5, 30, 6), w(35, 5, 4), w(40, 10, 5)]);
  });

  it('lets a newer piece over exactly the same range replace the older one', () => {
    expect(mapOf(w(8, 8, 1), z(8, 8, 2)).pieces()).toEqual([z(8, 8, 2)]);
    expect(mapOf(z(8, 8, 1), w(8, 8, 2)).pieces()).toEqual([w(8, 8, 2)]);
  });

  it('ignores zero-length pieces', () => {
    const map = mapOf(w(0, 10, 1), w(5, 0, 2));
    expect(map.pieces()).toEqual([w(0, 10, 1)]);
    expect(map.size).toBe(1);
  });

  it('merges adjacent zero pieces (newest seq) but not writes, gaps or a zero next to a write', () => {
    const map = mapOf(z(0, 10, 3), z(10, 10, 5), z(20, 5, 4), w(25, 5, 6), w(30, 5, 7), z(40, 5, 8));
    expect(map.size).toBe(6); // merging is a view: the pieces themselves stay apart
    expect(map.pieces()).toEqual([{ ...z(0, 25, 5), entry: 3 }, w(25, 5, 6), w(30, 5, 7), z(40, 5, 8)]);
  });

  // Against a model that keeps, for every byte, the record it came from.
  it.each([1, 2, 3, 4, 5, 6, 7, 8])('matches a byte-array model under random puts (seed %i)', (seed) => {
    const random = createPrng(seed);
    const diskBytes = 300;
    const map = new ExtentMap();
    const model: (Piece | undefined)[] = new Array(diskBytes).fill(undefined);
    for (let seq = 1; seq <= 400; seq++) {
      const offset = Math.floor(random() * diskBytes);
      // Mostly short pieces, some long ones that cover many older pieces, a few empty ones.
      const span = random() < 0.15 ? diskBytes : 24;
      const length = Math.min(diskBytes - offset, Math.floor(random() * span));
      const piece: Piece = { offset, length, kind: random() < 0.3 ? 'zero' : 'write', seq, entry: seq - 1 };
      map.put(piece);
      for (let b = offset; b < offset + length; b++) model[b] = piece;
      expect(check(map.pieces(), model), `seed ${seed}, after seq ${seq}`).toBeUndefined();
    }
  });
});

/** The first way `pieces` disagrees with the model (or breaks its shape), or undefined. */
function check(pieces: Piece[], model: (Piece | undefined)[]): string | undefined {
  const covered: (Piece | undefined)[] = new Array(model.length).fill(undefined);
  let prev: Piece | undefined;
  for (const p of pieces) {
    const at = `piece ${JSON.stringify(p)}`;
    if (p.length <= 0) return `${at} is empty`;
    if (prev && p.offset < prev.offset + prev.length) return `${at} overlaps or precedes the one before`;
    if (prev?.kind === 'zero' && p.kind === 'zero' && p.offset === prev.offset + prev.length) return `${at}: adjacent zero pieces not merged`;
    prev = p;
    for (let b = p.offset; b < p.offset + p.length; b++) covered[b] = p;
    if (p.kind === 'zero') {
      const sources = model.slice(p.offset, p.offset + p.length);
      if (!sources.every((s) => s?.kind === 'zero')) return `${at} covers bytes that are not zeroed`;
      if (p.seq !== Math.max(...sources.map((s) => s!.seq))) return `${at} does not carry the newest seq of its zeroes`;
    }
  }
  for (let b = 0; b < model.length; b++) {
    const want = model[b];
    const got = covered[b];
    const same =
      want === undefined || got === undefined
        ? want === got
        : want.kind === 'write'
          ? got.kind === 'write' && got.seq === want.seq && got.entry === want.entry
          : got.kind === 'zero';
    if (!same) return `byte ${b}: expected ${JSON.stringify(want)}, got ${JSON.stringify(got)}`;
  }
  return undefined;
}
