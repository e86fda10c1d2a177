/**
 * Counters a server keeps across its connections. Plain numbers bumped on the hot path (no
 * maps, no allocation); `snapshot()` copies them for callers.
 */
import type { MemoryBudget } from './memory-budget.js';

export interface NbdServerStats {
  /** Connections open now (handshake or transmission). */
  connectionsActive: number;
  /** Connections accepted since the server started. */
  connectionsTotal: number;
  /** Requests answered (any command, success or error; DISC excluded). */
  requests: number;
  reads: number;
  writes: number;
  flushes: number;
  trims: number;
  writeZeroes: number;
  /** Requests answered with an error (validation or device). */
  errors: number;
  bytesRead: number;
  bytesWritten: number;
  /** Connections closed because the client broke the protocol. */
  protocolViolations: number;
  /** Requests in flight now, over all connections. */
  inflightRequests: number;
  /** The most requests one connection has had in flight at once. */
  peakInflightRequests: number;
  /** The most request bytes (read buffers, write payloads) one connection has held at once. */
  peakInflightBytes: number;
  /** The server's memory budget for all connections: its limit, in use now, the most in use at once. */
  budgetBytes: number;
  budgetUsedBytes: number;
  peakBudgetUsedBytes: number;
}

export class StatsCounters implements Omit<NbdServerStats, 'budgetBytes' | 'budgetUsedBytes' | 'peakBudgetUsedBytes'> {
  connectionsActive = 0;
  connectionsTotal = 0;
  requests = 0;
  reads = 0;
  writes = 0;
  flushes = 0;
  trims = 0;
  writeZeroes = 0;
  errors = 0;
  bytesRead = 0;
  bytesWritten = 0;
  protocolViolations = 0;
  inflightRequests = 0;
  peakInflightRequests = 0;
  peakInflightBytes = 0;

  snapshot(budget: MemoryBudget): NbdServerStats {
    return { ...this, budgetBytes: budget.limitBytes, budgetUsedBytes: budget.used, peakBudgetUsedBytes: budget.peak };
  }
}
