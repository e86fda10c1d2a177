/**
 * Coalescing: "last write wins" over a run of records. Records are put in seq order; the map
 * keeps non-overlapping pieces sorted by offset, splitting an older piece where a newer record
 * covers part of it. Each piece remembers the entry its bytes came from, so a reader can
 * fetch them from there.
 */

export interface Piece {
  offset: number;
  length: number;
  kind: 'write' | 'zero';
  /** Seq of the record these bytes came from. */
  seq: number;
  /** Index of the entry (in file order) these bytes come from. */
  entry: number;
}

export class ExtentMap {
  private readonly list: Piece[] = [];

  /** Puts a newer piece over whatever it overlaps. */
  put(piece: Piece): void {
    if (piece.length === 0) return;
    const end = piece.offset + piece.length;
    const first = this.firstEndingAfter(piece.offset);
    let last = first;
    const keep: Piece[] = [];
    while (last < this.list.length && this.list[last]!.offset < end) last++;
    if (first < last) {
      const head = this.list[first]!;
      if (head.offset < piece.offset) keep.push(slice(head, head.offset, piece.offset));
      keep.push(piece);
      const tail = this.list[last - 1]!;
      const tailEnd = tail.offset + tail.length;
      if (tailEnd > end) keep.push(slice(tail, end, tailEnd));
    } else {
      keep.push(piece);
    }
    this.list.splice(first, last - first, ...keep);
  }

  /** The pieces in offset order, adjacent zero pieces merged. */
  pieces(): Piece[] {
    const out: Piece[] = [];
    for (const piece of this.list) {
      const prev = out[out.length - 1];
      if (prev && prev.kind === 'zero' && piece.kind === 'zero' && prev.offset + prev.length === piece.offset) {
        out[out.length - 1] = { ...prev, length: prev.length + piece.length, seq: Math.max(prev.seq, piece.seq) };
      } else {
        out.push(piece);
      }
    }
    return out;
  }

  get size(): number {
    return this.list.length;
  }

  /** Index of the first piece whose end is past `offset` (binary search). */
  private firstEndingAfter(offset: number): number {
    let lo = 0;
    let hi = this.list.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const p = this.list[mid]!;
      if (p.offset + p.length <= offset) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}

/** The part [from, to) of a piece. */
function slice(piece: Piece, from: number, to: number): Piece {
  return {
    offset: from,
    length: to - from,
    kind: piece.kind,
    seq: piece.seq,
    entry: piece.entry,
  };
}
