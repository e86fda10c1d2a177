/**
 * READ reply buffers, carved side by side from slabs (Buffer's own pool takes only up to
 * 4 KiB, and a 4 KiB read's reply is 4 KiB plus its header). A slab's buffer goes back to a
 * BufferPool once every reply carved from it has been written to the socket: fresh memory
 * page-faults on first touch (one fault per 4 KiB page), so a read-heavy
 * client would otherwise pay for new memory every few requests.
 */
import { BufferPool } from '../core/index.js';

export class ReplySlab {
  /** Where the last reply taken from this slab starts. */
  start = 0;
  used = 0;
  /** Replies taken and not yet released. */
  outstanding = 0;

  constructor(
    readonly buf: Buffer,
    private readonly owner: ReplySlabs,
  ) {}

  /** Called once per reply taken, when its bytes are written (or will never be). */
  readonly release = (): void => {
    if (--this.outstanding === 0) this.owner.reuse(this);
  };
}

export class ReplySlabs {
  private readonly pool: BufferPool;
  private current: ReplySlab;

  constructor(
    slabBytes: number,
    /** Idle slabs kept for reuse at most. */
    maxFree = 4,
  ) {
    this.pool = new BufferPool(slabBytes, maxFree);
    this.current = new ReplySlab(this.pool.take(), this);
  }

  /** Reserves `bytes` (at most the slab size) in a slab: the reply is `buf` from `start`. */
  take(bytes: number): ReplySlab {
    let slab = this.current;
    if (slab.used + bytes > slab.buf.length) {
      const full = slab;
      slab = this.current = new ReplySlab(this.pool.take(), this);
      this.reuse(full);
    }
    slab.start = slab.used;
    slab.used = (slab.used + bytes + 7) & ~7; // keep views 8-byte aligned
    slab.outstanding++;
    return slab;
  }

  /** A slab with no reply outstanding gives its buffer back to the pool, unless it is being filled. */
  reuse(slab: ReplySlab): void {
    if (slab === this.current || slab.outstanding > 0) return;
    this.pool.give(slab.buf);
  }
}
