/**
 * Keeps overlapping IOs in arrival order (DESIGN.md invariant 3): an IO that overlaps one
 * still in flight waits until that one is released, so the order in which the disk sees
 * overlapping writes is the order in which they are recorded in the journal. IOs that do not
 * overlap run concurrently.
 *
 * The in-flight list is a plain array: the NBD queue depth is small (typically <= 64), and a
 * linear scan over it costs less than keeping an interval tree balanced.
 */

interface Entry {
  offset: number;
  end: number;
  done: Promise<void>;
  resolve: () => void;
}

/** A place in the queue: wait for `ready`, do the IO, then `release()` (exactly once). */
export interface OverlapTicket {
  readonly ready: Promise<void>;
  release(): void;
}

export class OverlapQueue {
  private readonly entries: Entry[] = [];

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
    if (length <= 0) return { ready: Promise.resolve(), release: () => {} };
    const end = offset + length;
    const before: Promise<void>[] = [];
    for (const e of this.entries) if (e.offset < end && offset < e.end) before.push(e.done);
    let resolve!: () => void;
    const done = new Promise<void>((r) => (resolve = r));
    const entry: Entry = { offset, end, done, resolve };
    this.entries.push(entry);
    let released = false;
    return {
      ready: before.length === 0 ? Promise.resolve() : Promise.all(before).then(() => {}),
      release: () => {
        if (released) return;
        released = true;
        const index = this.entries.indexOf(entry);
        if (index !== -1) this.entries.splice(index, 1);
        entry.resolve();
      },
    };
  }
}
