/**
 * The journal's record slabs (see open-segment.ts), shared by every journal of the process:
 * slabs of segments shipped from memory are handed back and reused (see BufferPool).
 *
 * A slab is given back only when nothing can still read it: the journal does so when it
 * releases a segment the shipper read from memory (the delta is in the store by then).
 */
import { BufferPool } from '../core/index.js';

/** 1 MiB slabs, at most 32 MiB kept. */
export const journalSlabs = new BufferPool(1024 * 1024, 32);
