/**
 * Recycles the journal's record slabs. Fresh memory costs a page fault per 4 KiB the first
 * time it is touched (about 8 µs per 64 KiB copied here, several times the copy itself), so
 * slabs of segments that were shipped from memory are handed back and reused.
 *
 * A slab is given back only when nothing can still read it: the journal does so when it
 * releases a segment the shipper read from memory (the delta is in the store by then).
 */
export class SlabPool {
  private readonly free: Buffer[] = [];

  constructor(
    readonly slabBytes: number,
    /** Slabs kept for reuse at most; more are left to the garbage collector. */
    readonly maxFree: number,
  ) {}

  take(): Buffer {
    return this.free.pop() ?? Buffer.allocUnsafe(this.slabBytes);
  }

  give(slab: Buffer): void {
    if (slab.length === this.slabBytes && this.free.length < this.maxFree) this.free.push(slab);
  }
}

/** Shared by every journal of the process: 1 MiB slabs, at most 32 MiB kept. */
export const journalSlabs = new SlabPool(1024 * 1024, 32);
