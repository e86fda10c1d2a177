/**
 * One client connection: owns the socket, runs the handshake, then hands the received bytes
 * to a Transmission. Whatever the client does wrong ends this connection only; the promise
 * `closed` settles once the socket is closed and every request it started has finished, which
 * is what lets the server close gracefully.
 */
import type { Socket } from 'node:net';
import type { Logger } from '../core/index.js';
import { ByteQueue } from './byte-queue.js';
import type { ExportTable } from './export-table.js';
import { ProtocolViolation, negotiate, type HandshakeIo, type HandshakeLimits } from './handshake.js';
import type { MemoryBudget } from './memory-budget.js';
import type { StatsCounters } from './stats.js';
import { Transmission, type EndReason, type TransmissionLimits } from './transmission.js';

export interface ConnectionContext {
  exports: ExportTable;
  stats: StatsCounters;
  logger: Logger;
  handshakeLimits: HandshakeLimits;
  transmissionLimits: TransmissionLimits;
  /** The server's memory for all its connections together. */
  budget: MemoryBudget;
  /** A client idle this long during the handshake is dropped. */
  handshakeTimeoutMs: number;
  /** After the server ends a connection, how long the client has to read its last replies. */
  closeTimeoutMs: number;
}

class ConnectionClosed extends Error {}

type Phase = 'handshake' | 'transmission' | 'ending' | 'closed';

export class NbdConnection {
  private readonly queue = new ByteQueue();
  private phase: Phase = 'handshake';
  private waiter: { bytes: number; resolve: (data: Buffer) => void; reject: (err: Error) => void } | null = null;
  private transmission: Transmission | null = null;
  private transmissionEnded = false;
  private socketClosed = false;
  private peerEnded = false;
  private resolveClosed!: () => void;
  /** Settles when the socket is closed and no request of this connection is still running. */
  readonly closed = new Promise<void>((resolve) => {
    this.resolveClosed = resolve;
  });
  private readonly logger: Logger;

  constructor(
    readonly id: number,
    private readonly socket: Socket,
    private readonly ctx: ConnectionContext,
  ) {
    this.logger = ctx.logger.child({ connection: id });
  }

  start(): void {
    const socket = this.socket;
    // Without it Nagle holds small replies back until the client's delayed ACK.
    socket.setNoDelay(true);
    socket.setTimeout(this.ctx.handshakeTimeoutMs);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('end', () => this.onPeerEnd());
    socket.on('timeout', () => {
      if (this.phase === 'handshake') {
        this.logger.info('nbd handshake timed out');
        socket.destroy();
      }
    });
    socket.on('error', (err) => this.logger.debug('nbd socket error', { reason: err.message }));
    socket.on('close', () => this.onSocketClose());
    void this.handshake();
  }

  /**
   * Graceful stop for server shutdown: a connection still haggling is dropped (it has nothing
   * in flight); one in transmission finishes its requests in flight, replies, then closes.
   */
  shutdown(): void {
    if (this.phase === 'handshake') this.socket.destroy();
    else if (this.phase === 'transmission') this.transmission?.stop({ kind: 'shutdown' });
  }

  private async handshake(): Promise<void> {
    const io: HandshakeIo = {
      read: (bytes) => this.read(bytes),
      write: (data) => {
        if (!this.socket.destroyed) this.socket.write(data);
      },
    };
    let negotiated;
    try {
      negotiated = await negotiate(io, this.ctx.exports, this.ctx.handshakeLimits);
    } catch (err) {
      if (err instanceof ProtocolViolation) {
        this.ctx.stats.protocolViolations++;
        this.logger.warn('nbd client broke the protocol during the handshake; closing', { reason: err.message });
        this.endSocket();
      } else {
        // The client went away mid-handshake (or a bug): nothing is left to say to it.
        if (!(err instanceof ConnectionClosed)) this.logger.error('nbd handshake failed', { reason: (err as Error).message });
        this.socket.destroy();
      }
      return;
    }
    if (negotiated === null || this.phase !== 'handshake') {
      this.endSocket();
      return;
    }
    const exp = negotiated.export;
    this.logger.debug('nbd client chose export', { export: exp.name, structuredReplies: negotiated.structuredReplies });
    this.phase = 'transmission';
    // An idle disk is normal: a VM may not touch it for hours.
    this.socket.setTimeout(0);
    this.transmission = new Transmission(
      this.socket,
      this.queue,
      exp,
      negotiated.structuredReplies,
      this.ctx.transmissionLimits,
      this.ctx.budget,
      this.ctx.stats,
      this.logger,
      (reason) => this.onTransmissionEnd(reason),
    );
    this.socket.resume();
    // Requests may already sit behind the last option in the received bytes.
    this.transmission.pump();
  }

  private read(bytes: number): Promise<Buffer> {
    if (this.queue.length >= bytes) {
      this.resumeHandshakeReading();
      return Promise.resolve(this.queue.take(bytes));
    }
    if (this.socketClosed || this.peerEnded) return Promise.reject(new ConnectionClosed());
    return new Promise((resolve, reject) => {
      this.waiter = { bytes, resolve, reject };
    });
  }

  private onData(chunk: Buffer): void {
    if (this.phase === 'transmission') {
      this.queue.push(chunk);
      this.transmission!.pump();
    } else if (this.phase === 'handshake') {
      this.queue.push(chunk);
      const waiter = this.waiter;
      if (waiter !== null && this.queue.length >= waiter.bytes) {
        this.waiter = null;
        waiter.resolve(this.queue.take(waiter.bytes));
      }
      // A client that floods us during haggling waits until the handshake catches up.
      if (this.queue.length > 2 * this.ctx.handshakeLimits.maxOptionBytes) this.socket.pause();
    }
    // After the transmission has stopped, further bytes are dropped unread.
  }

  private resumeHandshakeReading(): void {
    if (this.socket.isPaused() && this.queue.length <= 2 * this.ctx.handshakeLimits.maxOptionBytes) this.socket.resume();
  }

  private onPeerEnd(): void {
    // The client closed its sending side: finish what it asked for, then close ours.
    this.peerEnded = true;
    if (this.phase === 'transmission') this.transmission!.stop({ kind: 'disconnect' });
    else if (this.phase === 'handshake') this.failWaiter();
  }

  private onTransmissionEnd(reason: EndReason): void {
    this.transmissionEnded = true;
    if (reason.kind === 'violation') {
      this.ctx.stats.protocolViolations++;
      this.logger.warn('nbd client broke the protocol; closing', { reason: reason.message });
    } else {
      this.logger.debug('nbd transmission ended', { reason: reason.kind });
    }
    this.endSocket();
    this.maybeClosed();
  }

  /** Ends our side after queued replies are written; destroys it if the client never reads them. */
  private endSocket(): void {
    if (this.phase === 'closed') return;
    this.phase = 'ending';
    const socket = this.socket;
    if (socket.destroyed) return;
    socket.end();
    const timer = setTimeout(() => socket.destroy(), this.ctx.closeTimeoutMs);
    timer.unref();
    socket.once('close', () => clearTimeout(timer));
  }

  private onSocketClose(): void {
    this.socketClosed = true;
    const wasTransmitting = this.transmission !== null && !this.transmissionEnded;
    this.phase = 'closed';
    this.failWaiter();
    this.queue.clear();
    // Requests still running finish (the device cannot cancel them); their replies are dropped.
    if (wasTransmitting) this.transmission!.stop({ kind: 'disconnect' });
    this.maybeClosed();
  }

  private failWaiter(): void {
    const waiter = this.waiter;
    this.waiter = null;
    waiter?.reject(new ConnectionClosed());
  }

  private maybeClosed(): void {
    if (this.socketClosed && (this.transmission === null || this.transmissionEnded)) this.resolveClosed();
  }
}
