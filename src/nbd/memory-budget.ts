/**
 * The memory an NBD server gives all its connections together: bytes of requests in flight
 * (read buffers, write payloads) and of replies queued on their sockets. Each connection has
 * its own bounds too (TransmissionLimits); this one keeps many connections (up to the
 * server's maxConnections) from adding up to more than the host can spare. A connection that
 * finds the budget spent stops reading requests until some is given back.
 */
export class MemoryBudget {
  private usedBytes = 0;
  private peakBytes = 0;
  private readonly waiting = new Set<() => void>();

  constructor(readonly limitBytes: number) {}

  get used(): number {
    return this.usedBytes;
  }

  /** The most in use at once so far. */
  get peak(): number {
    return this.peakBytes;
  }

  get spent(): boolean {
    return this.usedBytes >= this.limitBytes;
  }

  take(bytes: number): void {
    this.usedBytes += bytes;
    if (this.usedBytes > this.peakBytes) this.peakBytes = this.usedBytes;
  }

  /** Gives bytes back; once under the limit again, the connections waiting for it go on. */
  give(bytes: number): void {
    this.usedBytes -= bytes;
    if (this.waiting.size === 0 || this.spent) return;
    const wake = [...this.waiting];
    this.waiting.clear();
    for (const go of wake) go();
  }

  /** Calls `go` once some budget is given back (a connection paused on it). */
  whenFree(go: () => void): void {
    this.waiting.add(go);
  }

  forget(go: () => void): void {
    this.waiting.delete(go);
  }
}

/** The default: 256 MiB for every connection of a server together. */
export const defaultMemoryBudgetBytes = 256 * 1024 * 1024;
