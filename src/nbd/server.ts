/**
 * NbdServer: serves block devices over NBD on unix sockets or TCP.
 *
 *   const server = new NbdServer({ exports: new Map([['disk0', device]]), logger });
 *   await server.listen({ path: '/run/ferry/disk0.sock' });   // or { host, port }
 *   ...
 *   await server.close();   // stop accepting, finish requests in flight, close connections
 *
 * The server does not own the devices: closing it leaves them open for the caller to close.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { FerryError, Logger, bindPrivately } from '../core/index.js';
import { NbdConnection, type ConnectionContext } from './connection.js';
import { ExportTable, type NbdExportSpec } from './export-table.js';
import { defaultHandshakeLimits, type HandshakeLimits } from './handshake.js';
import { MemoryBudget, defaultMemoryBudgetBytes } from './memory-budget.js';
import { StatsCounters, type NbdServerStats } from './stats.js';
import { defaultTransmissionLimits, type TransmissionLimits } from './transmission.js';

export interface NbdServerOptions {
  /** Export name → device (or device with options). Several connections to a name share its device. */
  exports: ReadonlyMap<string, NbdExportSpec>;
  /** What the empty ("default") export name means; defaults to the only export if there is one. */
  defaultExport?: string;
  logger?: Logger;
  /** Connections beyond this are refused (closed at once). Default 256. */
  maxConnections?: number;
  /**
   * Memory for all connections together: requests in flight and replies queued. Default: a
   * budget of 256 MiB of its own; servers given the same one share it.
   */
  budget?: MemoryBudget;
  /** Per-connection bounds on work in flight; see TransmissionLimits. */
  limits?: Partial<TransmissionLimits>;
  handshake?: Partial<HandshakeLimits>;
  /** Idle time allowed during the handshake. Default 30 s. */
  handshakeTimeoutMs?: number;
  /** Time a closing connection gets to take its last replies. Default 5 s. */
  closeTimeoutMs?: number;
}

export type NbdListenAddress = { path: string } | { host?: string; port: number };
export type NbdBoundAddress = { path: string } | { host: string; port: number };

export class NbdServer {
  private readonly table: ExportTable;
  private readonly logger: Logger;
  private readonly counters = new StatsCounters();
  private readonly connections = new Set<NbdConnection>();
  private readonly servers: Server[] = [];
  private readonly maxConnections: number;
  private readonly context: ConnectionContext;
  private nextId = 1;
  private closing: Promise<void> | null = null;

  constructor(options: NbdServerOptions) {
    this.table = new ExportTable(options.exports, options.defaultExport);
    this.logger = (options.logger ?? Logger.silent()).child({ component: 'nbd' });
    this.maxConnections = options.maxConnections ?? 256;
    this.context = {
      exports: this.table,
      stats: this.counters,
      logger: this.logger,
      handshakeLimits: { ...defaultHandshakeLimits, ...options.handshake },
      transmissionLimits: { ...defaultTransmissionLimits, ...options.limits },
      budget: options.budget ?? new MemoryBudget(defaultMemoryBudgetBytes),
      handshakeTimeoutMs: options.handshakeTimeoutMs ?? 30_000,
      closeTimeoutMs: options.closeTimeoutMs ?? 5_000,
    };
  }

  /** Starts listening; may be called more than once (e.g. a unix socket and a TCP port). */
  async listen(address: NbdListenAddress): Promise<NbdBoundAddress> {
    if (this.closing) throw new FerryError('invalid-state', 'the NBD server is closed');
    // allowHalfOpen: a client that shuts down its sending side still gets its last replies.
    const server = createServer({ allowHalfOpen: true, noDelay: true }, (socket) => this.accept(socket));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      const ready = (): void => {
        server.off('error', reject);
        resolve();
      };
      if ('path' in address) bindPrivately(() => server.listen(address.path, ready));
      else server.listen(address.port, address.host ?? '127.0.0.1', ready);
    }).catch((err: NodeJS.ErrnoException) => {
      throw new FerryError(err.code === 'EADDRINUSE' || err.code === 'EACCES' ? 'invalid-state' : 'io', `cannot listen on ${describeAddress(address)}: ${err.message}`, { cause: err });
    });
    server.on('error', (err) => this.logger.error('nbd listener error', { reason: err.message }));
    this.servers.push(server);
    const bound = server.address();
    const result: NbdBoundAddress = typeof bound === 'string' || bound === null ? { path: 'path' in address ? address.path : String(bound) } : { host: bound.address, port: bound.port };
    this.logger.info('nbd server listening', { address: describeAddress(result), exports: this.table.list().map((e) => e.name) });
    return result;
  }

  /** Counters over all connections since the server started. */
  stats(): NbdServerStats {
    return this.counters.snapshot(this.context.budget);
  }

  /**
   * Stops accepting, lets every request in flight finish and reply, closes all connections.
   * Idempotent: later calls return the same promise.
   */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    const stopped = Promise.all(this.servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
    for (const connection of this.connections) connection.shutdown();
    await Promise.all([...this.connections].map((connection) => connection.closed));
    await stopped;
    this.logger.info('nbd server closed', { ...this.counters.snapshot(this.context.budget) });
  }

  private accept(socket: Socket): void {
    if (this.closing || this.connections.size >= this.maxConnections) {
      this.logger.warn('nbd connection refused', { reason: this.closing ? 'server closing' : 'too many connections' });
      socket.destroy();
      return;
    }
    const connection = new NbdConnection(this.nextId++, socket, this.context);
    this.connections.add(connection);
    this.counters.connectionsTotal++;
    this.counters.connectionsActive++;
    void connection.closed.then(() => {
      this.connections.delete(connection);
      this.counters.connectionsActive--;
    });
    connection.start();
  }
}

function describeAddress(address: NbdListenAddress | NbdBoundAddress): string {
  return 'path' in address ? `unix:${address.path}` : `${address.host ?? '127.0.0.1'}:${address.port}`;
}
