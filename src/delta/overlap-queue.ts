/**
 * Keeps overlapping IOs in arrival order (docs/DESIGN.md invariant 3): an IO that overlaps one
 * still in flight waits until that one is released, so the order in which the disk sees
 * overlapping writes is the order in which they are recorded in the journal. IOs that do not
 * overlap run concurrently.
 *
 * The in-flight list is a plain array: the NBD queue depth is small (typically <= 64), and a
 * linear scan over it costs less than keeping an interval tree balanced. The common case (no
 * overlap) allocates one ticket and no promise; a ticket that must wait counts the earlier
 * overlapping tickets still in flight and is woken when the last of them is released.
 */

/** A place in the queue: wait for `ready` (if set), do the IO, then `release()` (exactly once). */
export interface OverlapTicket {
  /** Undefined when no earlier overlapping IO is in flight: the IO may start at once. */
  readonly ready: Promise<void> | undefined;
  release(): void;
}

class Ticket implements OverlapTicket {
  ready: Promise<void> | undefined = undefined;
  /** Position in the queue's entries while registered; -1 once released. */
  index = -1;
  /** Earlier overlapping tickets not yet released. */
  blockers = 0;
  /** Later overlapping tickets waiting (in part) for this one. */
  dependents: Ticket[] | undefined = undefined;
  wake: (() => void) | undefined = undefined;

  constructor(
    private readonly entries: Ticket[],
    readonly offset: number,
    readonly end: number,
  ) {}

  release(): void {
    if (this.index === -1) return;
    // The last entry takes this one's slot: order in the list does not matter.
    const entries = this.entries;
    const last = entries.pop()!;
    if (last !== this) {
      entries[this.index] = last;
      last.index = this.index;
    }
    this.index = -1;
    const dependents = this.dependents;
    if (dependents === undefined) return;
    this.dependents = undefined;
    for (const d of dependents) {
      if (--d.blockers === 0) d.wake!();
    }
  }
}

const noTicket: OverlapTicket = { ready: undefined, release: () => {} };

export class OverlapQueue {
  private readonly entries: Ticket[] = [];

  /** IOs registered and not yet released (waiting or running). */
  get size(): number {
    return this.entries.length;
  }

  /**
   * Registers the range at once (synchronously, so the order of calls is the order kept);
   * `ready` resolves when every earlier overlapping range has been released.
   */
  enqueue(offset: number, length: number): OverlapTicket {
    // Zero-length IOs order against nothing, so they are not registered.
    if (length <= 0) return noTicket;
    const end = offset + length;
    const entries = this.entries;
    const ticket = new Ticket(entries, offset, end);
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i]!;
      if (e.offset < end && offset < e.end) {
        (e.dependents ??= []).push(ticket);
        ticket.blockers++;
      }
    }
    if (ticket.blockers > 0) ticket.ready = new Promise<void>((resolve) => (ticket.wake = resolve));
    ticket.index = entries.length;
    entries.push(ticket);
    return ticket;
  }
}
