/**
 * The transmission phase of one connection: parses requests out of the received bytes,
 * validates each once, runs it on the device, and sends its reply. Requests run concurrently
 * and replies go out in completion order (the protocol matches them by cookie).
 *
 * Memory per connection is bounded: before parsing each request header the parser checks the
 * requests and bytes in flight and the replies queued on the socket; over any limit it stops
 * parsing and pauses the socket, and resumes as requests complete or the socket drains. So a
 * client that pipelines without end, or never reads its replies, holds at most about
 * maxInflightBytes + one maximal request.
 */
import type { Socket } from 'node:net';
import type { Logger, WriteData, WriteOptions } from '../core/index.js';
import type { BlockDevice } from '../core/index.js';
import type { ByteQueue } from './byte-queue.js';
import { nbdErrorFor, nbdErrorName } from './errors.js';
import { maxPayloadBytes, type NbdExport } from './export-table.js';
import {
  NBD_CMD_DISC,
  NBD_CMD_FLAG_DF,
  NBD_CMD_FLAG_FUA,
  NBD_CMD_FLAG_NO_HOLE,
  NBD_CMD_FLUSH,
  NBD_CMD_READ,
  NBD_CMD_TRIM,
  NBD_CMD_WRITE,
  NBD_CMD_WRITE_ZEROES,
  NBD_EINVAL,
  NBD_ENOSPC,
  NBD_EOVERFLOW,
  NBD_EPERM,
  NBD_ESHUTDOWN,
  NBD_REPLY_FLAG_DONE,
  NBD_REPLY_TYPE_OFFSET_DATA,
  NBD_REQUEST_MAGIC,
  NBD_SIMPLE_REPLY_MAGIC,
  commandNames,
  encodeStructuredError,
  offsetDataPrefixBytes,
  requestHeaderBytes,
  simpleReplyHeaderBytes,
  writeSimpleReplyHeader,
  writeStructuredReplyHeader,
} from './protocol.js';
import type { StatsCounters } from './stats.js';
import type { MemoryBudget } from './memory-budget.js';
import { ReplySlabs, type ReplySlab } from './reply-slabs.js';

export interface TransmissionLimits {
  /** Requests one connection may have in flight before the server stops reading from it. */
  maxInflightRequests: number;
  /** Bytes of read buffers and write payloads in flight before the server stops reading. */
  maxInflightBytes: number;
  /** Reply bytes queued on the socket (client not reading) before the server stops reading. */
  maxQueuedReplyBytes: number;
}

export const defaultTransmissionLimits: TransmissionLimits = {
  maxInflightRequests: 128,
  maxInflightBytes: 64 * 1024 * 1024,
  maxQueuedReplyBytes: 64 * 1024 * 1024,
};

/** Why the transmission ended; decides how the connection logs and counts it. */
export type EndReason = { kind: 'disconnect' } | { kind: 'violation'; message: string } | { kind: 'shutdown' };

// Parser states.
const HEADER = 0;
const PAYLOAD = 1;
const DISCARD = 2;
const STOPPED = 3;

const fuaOptions: WriteOptions = Object.freeze({ fua: true });
/** A WRITE's payload lies in received socket chunks, which nothing changes after. */
const writeOptions: WriteOptions = Object.freeze({ immutable: true });
const fuaWriteOptions: WriteOptions = Object.freeze({ fua: true, immutable: true });

/** READ replies up to this size are carved from per-connection slabs of replySlabBytes (reply-slabs.ts). */
const maxSlabReplyBytes = 64 * 1024 + 64;
const replySlabBytes = 256 * 1024;
/** A WRITE payload still incomplete after this many chunks is copied together as it comes (receivePayload). */
const maxPayloadPieces = 16;
/** Simple replies gathered per slab (16 bytes each). */
const smallReplySlabBytes = 16 * 1024;

export class Transmission {
  private state = HEADER;
  private inflight = 0;
  private inflightBytes = 0;
  private paused = false;
  private corked = false;
  private ended = false;
  /** Server shutdown with requests still running: new requests get ESHUTDOWN until they finish. */
  private shuttingDown = false;
  private endReason: EndReason | undefined;
  private readonly device: BlockDevice;
  private readonly allowedFlags: Record<number, number>;
  /** Reply bytes on the socket as last counted against the server's budget. */
  private queuedCounted = 0;
  private readonly resumeOnBudget = (): void => {
    if (this.paused) this.pump();
  };

  // The WRITE whose payload is being received (state PAYLOAD), or the bytes left to skip (DISCARD).
  private pendingCookieHi = 0;
  private pendingCookieLo = 0;
  private pendingOffset = 0;
  private pendingFua = false;
  private pendingPayload: Buffer | null = null;
  private pendingFilled = 0;
  private pendingLength = 0;
  private discardLeft = 0;

  // Reply buffers (see read and sendSimple).
  private readonly replySlabs = new ReplySlabs(replySlabBytes);
  private small: Buffer = Buffer.allocUnsafe(smallReplySlabBytes);
  private smallStart = 0;
  private smallUsed = 0;

  constructor(
    private readonly socket: Socket,
    private readonly queue: ByteQueue,
    private readonly exp: NbdExport,
    private readonly structured: boolean,
    private readonly limits: TransmissionLimits,
    private readonly budget: MemoryBudget,
    private readonly stats: StatsCounters,
    private readonly logger: Logger,
    private readonly onEnd: (reason: EndReason) => void,
  ) {
    this.device = exp.device;
    // FUA is valid on every command once advertised; ferry advertises it only when writable.
    const fua = exp.readOnly ? 0 : NBD_CMD_FLAG_FUA;
    this.allowedFlags = {
      [NBD_CMD_READ]: fua | (structured ? NBD_CMD_FLAG_DF : 0),
      [NBD_CMD_WRITE]: fua,
      [NBD_CMD_FLUSH]: fua,
      [NBD_CMD_TRIM]: fua,
      [NBD_CMD_WRITE_ZEROES]: fua | NBD_CMD_FLAG_NO_HOLE,
      [NBD_CMD_DISC]: 0xffff,
    };
    socket.on('drain', () => {
      this.countQueued();
      if (this.paused) this.pump();
    });
    socket.on('close', () => {
      this.budget.forget(this.resumeOnBudget);
      this.budget.give(this.queuedCounted);
      this.queuedCounted = 0;
    });
  }

  /** Parses and starts as many received requests as the limits allow. Call after new bytes arrive. */
  pump(): void {
    const queue = this.queue;
    while (this.state !== STOPPED) {
      if (this.state === HEADER) {
        if (this.overLimit()) {
          if (!this.paused) {
            this.paused = true;
            this.socket.pause();
          }
          if (this.budget.spent) this.budget.whenFree(this.resumeOnBudget);
          return;
        }
        if (queue.length < requestHeaderBytes) break;
        this.parseRequest();
      } else if (this.state === PAYLOAD) {
        if (!this.receivePayload()) break;
      } else {
        this.discardLeft -= queue.skip(this.discardLeft);
        if (this.discardLeft > 0) break;
        this.state = HEADER;
      }
    }
    if (this.paused && this.state !== STOPPED) {
      this.paused = false;
      this.socket.resume();
    }
  }

  /**
   * Stops taking requests: for DISC, a protocol violation, the client closing its side, or the
   * server shutting down. The socket is ended once every request in flight has replied.
   */
  stop(reason: EndReason): void {
    if (this.state === STOPPED) return;
    if (reason.kind === 'shutdown' && this.inflight > 0) {
      // The spec's graceful shutdown: serve what is in flight, answer anything newer with
      // ESHUTDOWN (the client then disconnects), and hang up once the last one has replied.
      this.shuttingDown = true;
      return;
    }
    if (this.state === PAYLOAD) this.addInflightBytes(-this.pendingLength); // a payload that will never come
    this.state = STOPPED;
    this.endReason = reason;
    this.pendingPayload = null;
    this.queue.clear();
    // Keep reading (and dropping) what the client still sends: a client blocked on a full
    // socket buffer could never see our FIN and close its side.
    if (this.paused) {
      this.paused = false;
      this.socket.resume();
    }
    this.maybeEnd();
  }

  private overLimit(): boolean {
    return (
      this.inflight >= this.limits.maxInflightRequests ||
      this.inflightBytes >= this.limits.maxInflightBytes ||
      this.socket.writableLength >= this.limits.maxQueuedReplyBytes ||
      this.budget.spent
    );
  }

  /** Requests' bytes in flight, for this connection's bound and the server's budget. */
  private addInflightBytes(bytes: number): void {
    this.inflightBytes += bytes;
    if (bytes > 0) this.budget.take(bytes);
    else this.budget.give(-bytes);
  }

  /**
   * Counts the replies waiting on the socket against the server's budget. Between two counts
   * the kernel takes bytes without telling, so the count may be high until the next: it errs
   * on the safe side. Counted after each reply and when the socket drains.
   */
  private countQueued(): void {
    const now = this.socket.writableLength;
    const delta = now - this.queuedCounted;
    if (delta === 0) return;
    this.queuedCounted = now;
    if (delta > 0) this.budget.take(delta);
    else this.budget.give(-delta);
  }

  private parseRequest(): void {
    const queue = this.queue;
    // Parsed where it lies in the received chunk (no view, no copy); a small copy only when
    // the header spans two chunks.
    const buf = queue.peek(requestHeaderBytes);
    const at = queue.peekOffset;
    const magic = buf.readUInt32BE(at);
    const flags = buf.readUInt16BE(at + 4);
    const type = buf.readUInt16BE(at + 6);
    const cookieHi = buf.readUInt32BE(at + 8);
    const cookieLo = buf.readUInt32BE(at + 12);
    const offsetHi = buf.readUInt32BE(at + 16);
    const offsetLo = buf.readUInt32BE(at + 20);
    const length = buf.readUInt32BE(at + 24);
    queue.skip(requestHeaderBytes);
    if (magic !== NBD_REQUEST_MAGIC) {
      this.stop({ kind: 'violation', message: `bad request magic 0x${magic.toString(16)}` });
      return;
    }
    // Offsets past 2^53 lose precision but stay far beyond any disk, so range checks still hold.
    const offset = offsetHi * 0x1_0000_0000 + offsetLo;

    if (type === NBD_CMD_DISC) {
      this.stop({ kind: 'disconnect' });
      return;
    }
    const error = this.validate(type, flags, offset, length);
    if (type === NBD_CMD_WRITE) {
      if (error !== 0) {
        // The payload follows the header whatever we think of it; skip it to stay in frame.
        this.replyError(cookieHi, cookieLo, error, validationMessage(error, type));
        this.discardLeft = length;
        this.state = DISCARD;
        return;
      }
      this.pendingCookieHi = cookieHi;
      this.pendingCookieLo = cookieLo;
      this.pendingOffset = offset;
      this.pendingFua = (flags & NBD_CMD_FLAG_FUA) !== 0;
      this.pendingLength = length;
      this.pendingPayload = null;
      this.pendingFilled = 0;
      this.addInflightBytes(length);
      this.state = PAYLOAD;
      return;
    }
    if (error !== 0) {
      this.replyError(cookieHi, cookieLo, error, validationMessage(error, type));
      return;
    }
    const options = (flags & NBD_CMD_FLAG_FUA) !== 0 ? fuaOptions : undefined;
    switch (type) {
      case NBD_CMD_READ:
        this.read(cookieHi, cookieLo, offsetHi, offsetLo, offset, length);
        break;
      case NBD_CMD_FLUSH:
        this.simple(type, cookieHi, cookieLo, 0, 0, undefined, undefined);
        break;
      case NBD_CMD_TRIM:
      case NBD_CMD_WRITE_ZEROES:
        this.simple(type, cookieHi, cookieLo, offset, length, undefined, options);
        break;
    }
  }

  /**
   * Collects the current WRITE's payload; true when it is complete and has been started.
   *
   * The payload goes to the device as the pieces it arrived in, with no copy: a 64 KiB write
   * straddles two of Node's 64 KiB socket reads, and assembling it cost a fifth of the
   * server's time per request. While it arrives, its chunks wait in the queue; once a payload
   * still incomplete fills maxPayloadPieces chunks (a client trickling bytes), it is copied
   * into one buffer as it comes, so a trickle cannot pile up chunks (or iovecs) without bound.
   */
  private receivePayload(): boolean {
    const queue = this.queue;
    const length = this.pendingLength;
    let payload: Buffer | Buffer[] | null = this.pendingPayload;
    if (payload === null) {
      if (queue.length >= length) payload = queue.takePieces(length);
      else if (queue.chunkCount < maxPayloadPieces) return false;
      else {
        payload = Buffer.allocUnsafe(length);
        this.pendingPayload = payload;
        this.pendingFilled = queue.copyInto(payload, 0, queue.length);
        return false;
      }
    } else {
      this.pendingFilled += queue.copyInto(payload, this.pendingFilled, length - this.pendingFilled);
      if (this.pendingFilled < length) return false;
    }
    this.pendingPayload = null;
    this.state = HEADER;
    // inflightBytes already counts this payload (added when the header was parsed); begin counts it again.
    this.addInflightBytes(-length);
    this.simple(NBD_CMD_WRITE, this.pendingCookieHi, this.pendingCookieLo, this.pendingOffset, length, payload, this.pendingFua ? fuaWriteOptions : writeOptions);
    return true;
  }

  /** Validation, once, at the edge: every request reaching the device is in range and well-formed. */
  private validate(type: number, flags: number, offset: number, length: number): number {
    if (this.shuttingDown) return NBD_ESHUTDOWN;
    const allowed = this.allowedFlags[type];
    if (allowed === undefined) return NBD_EINVAL; // unknown command
    if ((flags & ~allowed) !== 0) return NBD_EINVAL;
    const exp = this.exp;
    const writes = type === NBD_CMD_WRITE || type === NBD_CMD_TRIM || type === NBD_CMD_WRITE_ZEROES;
    if (writes && exp.readOnly) return NBD_EPERM;
    if (type === NBD_CMD_FLUSH) return offset === 0 && length === 0 ? 0 : NBD_EINVAL;
    if (length === 0) return NBD_EINVAL;
    if ((type === NBD_CMD_READ || type === NBD_CMD_WRITE) && length > maxPayloadBytes) return NBD_EOVERFLOW;
    if (offset + length > exp.sizeBytes) return type === NBD_CMD_WRITE || type === NBD_CMD_WRITE_ZEROES ? NBD_ENOSPC : NBD_EINVAL;
    if (exp.minBlockBytes > 1 && (offset % exp.minBlockBytes !== 0 || length % exp.minBlockBytes !== 0)) return NBD_EINVAL;
    return 0;
  }

  /**
   * Starts a READ. One closure per request, no async frame: the reply is sent and the
   * bookkeeping settled in the device promise's own callbacks.
   */
  private read(cookieHi: number, cookieLo: number, offsetHi: number, offsetLo: number, offset: number, length: number): void {
    // Read straight into the reply buffer behind its header: no copy.
    const headerBytes = this.structured ? offsetDataPrefixBytes : simpleReplyHeaderBytes;
    const bytes = headerBytes + length;
    const slab: ReplySlab | undefined = bytes <= maxSlabReplyBytes ? this.replySlabs.take(bytes) : undefined;
    const reply = slab === undefined ? Buffer.allocUnsafe(bytes) : slab.buf.subarray(slab.start, slab.start + bytes);
    this.begin(length);
    let op: Promise<void>;
    try {
      op = this.device.read(reply.subarray(headerBytes), offset);
    } catch (err) {
      op = Promise.reject(err as Error);
    }
    op.then(
      () => {
        if (this.structured) {
          // One data chunk covering the whole request, marked final: it was read in full already.
          writeStructuredReplyHeader(reply, 0, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_OFFSET_DATA, cookieHi, cookieLo, 8 + length);
          reply.writeUInt32BE(offsetHi, 20);
          reply.writeUInt32BE(offsetLo, 24);
        } else {
          writeSimpleReplyHeader(reply, 0, cookieHi, cookieLo);
        }
        const stats = this.stats;
        stats.reads++;
        stats.bytesRead += length;
        stats.requests++;
        this.send(reply, slab?.release);
        this.finish(length);
      },
      (err: unknown) => {
        slab?.release();
        this.deviceError(NBD_CMD_READ, cookieHi, cookieLo, err);
        this.finish(length);
      },
    );
  }

  /** Starts a WRITE (with its payload), WRITE_ZEROES, TRIM or FLUSH: requests with a simple reply. */
  private simple(type: number, cookieHi: number, cookieLo: number, offset: number, length: number, payload: WriteData | undefined, options: WriteOptions | undefined): void {
    // A write's payload counts against the in-flight bytes until it is done; the others hold none.
    const bytes = payload !== undefined ? length : 0;
    this.begin(bytes);
    // A durable request with no other in flight or received (queue depth 1: a database's
    // commit) may be done whole on this thread: nothing of this connection waits meanwhile,
    // and the device does it inline only while its syncs are fast (FileDevice, InlineIo).
    const durable = type === NBD_CMD_FLUSH || options?.fua === true;
    if (durable && this.onlyRequest()) options = { ...options, alone: true };
    const device = this.device;
    let op: Promise<void>;
    try {
      if (type === NBD_CMD_WRITE) op = device.write(payload!, offset, options);
      else if (type === NBD_CMD_WRITE_ZEROES) op = device.writeZeroes(offset, length, options);
      else if (type === NBD_CMD_TRIM) op = device.trim(offset, length, options);
      else op = device.flush(options);
    } catch (err) {
      op = Promise.reject(err as Error);
    }
    op.then(
      () => {
        const stats = this.stats;
        stats.requests++;
        if (type === NBD_CMD_WRITE) {
          stats.writes++;
          stats.bytesWritten += length;
        } else if (type === NBD_CMD_FLUSH) stats.flushes++;
        else if (type === NBD_CMD_TRIM) stats.trims++;
        else stats.writeZeroes++;
        this.sendSimple(0, cookieHi, cookieLo);
        this.finish(bytes);
      },
      (err: unknown) => {
        this.deviceError(type, cookieHi, cookieLo, err);
        this.finish(bytes);
      },
    );
  }

  /** The request running is this connection's only one: none other in flight or received. */
  private onlyRequest(): boolean {
    return this.inflight === 1 && this.queue.length === 0;
  }

  /** A request starts: count it against the limits. */
  private begin(bytes: number): void {
    this.inflight++;
    this.addInflightBytes(bytes);
    const stats = this.stats;
    stats.inflightRequests++;
    if (this.inflight > stats.peakInflightRequests) stats.peakInflightRequests = this.inflight;
    if (this.inflightBytes > stats.peakInflightBytes) stats.peakInflightBytes = this.inflightBytes;
  }

  /** A request has replied (or failed and replied): settle the bookkeeping. */
  private finish(bytes: number): void {
    this.inflight--;
    this.addInflightBytes(-bytes);
    this.countQueued();
    this.stats.inflightRequests--;
    if (this.state === STOPPED) this.maybeEnd();
    else if (this.shuttingDown && this.inflight === 0) this.stop({ kind: 'shutdown' });
    else if (this.paused) this.pump();
  }

  private deviceError(type: number, cookieHi: number, cookieLo: number, err: unknown): void {
    const error = nbdErrorFor(err);
    this.logger.warn('nbd request failed', { command: commandNames[type], error: nbdErrorName(error), reason: (err as Error)?.message });
    // The detail stays in our log; the client gets the error value and a short message.
    this.replyError(cookieHi, cookieLo, error, `${commandNames[type] ?? 'request'} failed: ${nbdErrorName(error)}`);
  }

  private replyError(cookieHi: number, cookieLo: number, error: number, message: string): void {
    this.stats.requests++;
    this.stats.errors++;
    // With structured replies a READ must not get a simple reply; errors prefer the
    // structured form anyway because it carries a message for the user.
    if (this.structured) {
      this.send(encodeStructuredError(error, message, cookieHi, cookieLo));
    } else {
      this.sendSimple(error, cookieHi, cookieLo);
    }
  }

  /**
   * Queues a simple reply. Simple replies finishing in the same event-loop turn are written
   * side by side into one small buffer and leave in one socket write at the end of the turn.
   */
  private sendSimple(error: number, cookieHi: number, cookieLo: number): void {
    if (this.ended || this.socket.destroyed) return;
    let small = this.small;
    if (this.smallUsed + simpleReplyHeaderBytes > small.length) {
      // Full: hand what it holds to the socket now and start another.
      this.flushSmall();
      small = this.small = Buffer.allocUnsafe(smallReplySlabBytes);
      this.smallStart = this.smallUsed = 0;
    }
    const at = this.smallUsed;
    small.writeUInt32BE(NBD_SIMPLE_REPLY_MAGIC, at);
    small.writeUInt32BE(error, at + 4);
    small.writeUInt32BE(cookieHi, at + 8);
    small.writeUInt32BE(cookieLo, at + 12);
    this.smallUsed = at + simpleReplyHeaderBytes;
    if (this.corked || !this.onlyRequest()) this.scheduleUncork();
    else this.flushSmall(); // queue depth 1: no other reply can join it, so it leaves now
  }

  /** Writes the simple replies gathered so far (their bytes are never touched again). */
  private flushSmall(): void {
    if (this.smallUsed === this.smallStart) return;
    const chunk = this.small.subarray(this.smallStart, this.smallUsed);
    this.smallStart = this.smallUsed;
    if (!this.socket.destroyed) this.socket.write(chunk);
  }

  /**
   * Replies finishing in the same event-loop turn are corked and leave together in one
   * writev at the end of the turn (setImmediate): fewer syscalls and packets at high queue
   * depth. The only request of its connection replies at once: nothing could join it, so
   * waiting for the end of the turn would only delay a queue-depth-1 client.
   */
  private send(reply: Buffer, written?: () => void): void {
    const socket = this.socket;
    if (this.ended || socket.destroyed) return written?.();
    if (this.corked || !this.onlyRequest()) this.scheduleUncork();
    socket.write(reply, written);
  }

  private scheduleUncork(): void {
    if (this.corked) return;
    this.corked = true;
    this.socket.cork();
    setImmediate(this.uncork);
  }

  private readonly uncork = (): void => {
    this.corked = false;
    this.flushSmall();
    if (!this.socket.destroyed) this.socket.uncork();
  };

  private maybeEnd(): void {
    if (this.inflight > 0 || this.ended) return;
    this.ended = true;
    if (this.corked) this.uncork();
    this.onEnd(this.endReason ?? { kind: 'disconnect' });
  }
}

function validationMessage(error: number, type: number): string {
  const name = commandNames[type] ?? `command ${type}`;
  switch (error) {
    case NBD_EPERM:
      return `${name}: the export is read-only`;
    case NBD_ENOSPC:
      return `${name}: range runs past the end of the export`;
    case NBD_EOVERFLOW:
      return `${name}: request larger than the ${maxPayloadBytes}-byte maximum`;
    case NBD_ESHUTDOWN:
      return `${name}: server is shutting down`;
    default:
      return commandNames[type] === undefined ? `unknown command ${type}` : `${name}: invalid flags, length or range`;
  }
}
