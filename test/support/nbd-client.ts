/**
 * A minimal NBD client for tests: fixed-newstyle handshake with NBD_OPT_GO, then pipelined
 * requests matched to replies by cookie. It speaks both simple and structured replies and also
 * exposes the raw socket so fuzz tests can send whatever they like.
 */
import { connect, type Socket } from 'node:net';
import type { BlockDevice, WriteOptions } from '../../src/core/index.js';

export const REQUEST_MAGIC = 0x25609513;
export const CMD = { READ: 0, WRITE: 1, DISC: 2, FLUSH: 3, TRIM: 4, WRITE_ZEROES: 6 } as const;
const IHAVEOPT = 0x49484156454f5054n;
const OPT_GO = 7;
const OPT_STRUCTURED_REPLY = 8;
const REP_ACK = 1;
const REP_INFO = 3;
const CMD_FLAG_FUA = 1;

export interface Reply {
  error: number;
  data?: Buffer;
}

export interface ClientOptions {
  path?: string;
  host?: string;
  port?: number;
  exportName?: string;
  structured?: boolean;
}

export class NbdTestClient {
  sizeBytes = 0;
  transmissionFlags = 0;
  private chunks: Buffer[] = [];
  private bufferedBytes = 0;
  private wake: (() => void) | null = null;
  private ended = false;
  private nextCookie = 1n;
  private readonly pending = new Map<bigint, { resolve: (r: Reply) => void; length: number; reject: (e: Error) => void }>();
  private readLoop: Promise<void> | null = null;
  /**
   * How a request's bytes reach the socket; by default one write. A test may replace it to
   * deliver requests in pieces (the server must cope with any split).
   */
  send: (bytes: Buffer) => void = (bytes) => void this.socket.write(bytes);

  private constructor(readonly socket: Socket, readonly structured: boolean) {
    socket.on('data', (chunk: Buffer) => {
      this.chunks.push(chunk);
      this.bufferedBytes += chunk.length;
      this.wake?.();
    });
    const end = (): void => {
      this.ended = true;
      this.wake?.();
    };
    socket.on('end', end);
    socket.on('close', end);
    socket.on('error', end);
  }

  /** Connects and runs the handshake (NBD_OPT_STRUCTURED_REPLY if asked, then NBD_OPT_GO). */
  static async connect(options: ClientOptions): Promise<NbdTestClient> {
    const socket = await openSocket(options);
    const client = new NbdTestClient(socket, options.structured ?? true);
    await client.handshake(options.exportName ?? 'disk0');
    client.readLoop = client.replies();
    return client;
  }

  /** Connects and reads the 18-byte greeting only; for fuzzing the handshake. */
  static async raw(options: ClientOptions): Promise<Socket> {
    return openSocket(options);
  }

  read(offset: number, length: number, flags = 0): Promise<Reply> {
    return this.request(CMD.READ, flags, offset, length);
  }

  write(offset: number, data: Buffer, flags = 0): Promise<Reply> {
    return this.request(CMD.WRITE, flags, offset, data.length, data);
  }

  flush(): Promise<Reply> {
    return this.request(CMD.FLUSH, 0, 0, 0);
  }

  /** Sends any request; the reply's error is returned, never thrown. */
  request(type: number, flags: number, offset: number, length: number, payload?: Buffer): Promise<Reply> {
    const cookie = this.nextCookie++;
    const header = encodeRequest(type, flags, cookie, BigInt(offset), length);
    return new Promise<Reply>((resolve, reject) => {
      this.pending.set(cookie, { resolve, reject, length: type === CMD.READ ? length : 0 });
      this.send(payload ? Buffer.concat([header, payload]) : header);
    });
  }

  /** NBD_CMD_DISC, then waits for the server to close. */
  async disconnect(): Promise<void> {
    this.socket.write(encodeRequest(CMD.DISC, 0, 0n, 0n, 0));
    await this.closed();
  }

  closed(): Promise<void> {
    if (this.socket.closed) return Promise.resolve();
    return new Promise((resolve) => this.socket.once('close', () => resolve()));
  }

  private async handshake(exportName: string): Promise<void> {
    const greeting = await this.take(18);
    if (greeting.readBigUInt64BE(8) !== IHAVEOPT) throw new Error('not a newstyle NBD server');
    this.socket.write(u32(1 | 2)); // FIXED_NEWSTYLE | NO_ZEROES
    if (this.structured) {
      this.socket.write(encodeOption(OPT_STRUCTURED_REPLY, Buffer.alloc(0)));
      const reply = await this.optionReply();
      if (reply.type !== REP_ACK) throw new Error(`structured replies refused: ${reply.type}`);
    }
    const name = Buffer.from(exportName);
    const data = Buffer.concat([u32(name.length), name, Buffer.from([0, 0])]);
    this.socket.write(encodeOption(OPT_GO, data));
    for (;;) {
      const reply = await this.optionReply();
      if (reply.type === REP_ACK) return;
      if (reply.type !== REP_INFO) throw new Error(`NBD_OPT_GO failed: reply type 0x${reply.type.toString(16)} ${reply.data.toString()}`);
      if (reply.data.readUInt16BE(0) === 0) {
        this.sizeBytes = Number(reply.data.readBigUInt64BE(2));
        this.transmissionFlags = reply.data.readUInt16BE(10);
      }
    }
  }

  private async optionReply(): Promise<{ type: number; data: Buffer }> {
    const header = await this.take(20);
    const type = header.readUInt32BE(12);
    const data = await this.take(header.readUInt32BE(16));
    return { type, data };
  }

  private async replies(): Promise<void> {
    try {
      for (;;) {
        const magic = (await this.take(4)).readUInt32BE(0);
        if (magic === 0x67446698) {
          const rest = await this.take(12);
          const error = rest.readUInt32BE(0);
          const cookie = rest.readBigUInt64BE(4);
          const entry = this.entry(cookie);
          const data = error === 0 && entry.length > 0 ? await this.take(entry.length) : undefined;
          this.pending.delete(cookie);
          entry.resolve({ error, data });
        } else if (magic === 0x668e33ef) {
          const rest = await this.take(16);
          const flags = rest.readUInt16BE(0);
          const type = rest.readUInt16BE(2);
          const cookie = rest.readBigUInt64BE(4);
          const payload = await this.take(rest.readUInt32BE(12));
          const entry = this.entry(cookie);
          // Tests only need one chunk per reply: ferry sends data (or an error) marked DONE.
          if ((flags & 1) === 0) throw new Error('multi-chunk structured reply not expected from ferry');
          this.pending.delete(cookie);
          if (type === 1) entry.resolve({ error: 0, data: payload.subarray(8) });
          else if (type === 0) entry.resolve({ error: 0 });
          else entry.resolve({ error: payload.readUInt32BE(0) });
        } else {
          throw new Error(`bad reply magic 0x${magic.toString(16)}`);
        }
      }
    } catch (err) {
      for (const entry of this.pending.values()) entry.reject(err as Error);
      this.pending.clear();
    }
  }

  private entry(cookie: bigint): { resolve: (r: Reply) => void; length: number; reject: (e: Error) => void } {
    const entry = this.pending.get(cookie);
    if (!entry) throw new Error(`reply for unknown cookie ${cookie}`);
    return entry;
  }

  private async take(n: number): Promise<Buffer> {
    while (this.bufferedBytes < n) {
      if (this.ended) throw new Error('connection closed');
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
      this.wake = null;
    }
    if (n === 0) return Buffer.alloc(0);
    // Join chunks only as far as needed: joining everything each time is quadratic.
    let first = this.chunks[0]!;
    if (first.length < n) {
      let joined = 0;
      let count = 0;
      while (joined < n) joined += this.chunks[count++]!.length;
      first = Buffer.concat(this.chunks.splice(0, count));
      this.chunks.unshift(first);
    }
    const out = first.subarray(0, n);
    if (first.length === n) this.chunks.shift();
    else this.chunks[0] = first.subarray(n);
    this.bufferedBytes -= n;
    return out;
  }
}

export function encodeRequest(type: number, flags: number, cookie: bigint, offset: bigint, length: number, magic = REQUEST_MAGIC): Buffer {
  const buf = Buffer.alloc(28);
  buf.writeUInt32BE(magic >>> 0, 0);
  buf.writeUInt16BE(flags, 4);
  buf.writeUInt16BE(type, 6);
  buf.writeBigUInt64BE(cookie, 8);
  buf.writeBigUInt64BE(offset, 16);
  buf.writeUInt32BE(length >>> 0, 24);
  return buf;
}

export function encodeOption(option: number, data: Buffer, magic = IHAVEOPT): Buffer {
  const header = Buffer.alloc(16);
  header.writeBigUInt64BE(magic, 0);
  header.writeUInt32BE(option >>> 0, 8);
  header.writeUInt32BE(data.length, 12);
  return Buffer.concat([header, data]);
}

function u32(value: number): Buffer {
  const buf = Buffer.alloc(4);
  buf.writeUInt32BE(value >>> 0, 0);
  return buf;
}

function openSocket(options: ClientOptions): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = options.path !== undefined ? connect(options.path) : connect(options.port!, options.host ?? '127.0.0.1');
    socket.setNoDelay(true);
    socket.once('connect', () => {
      socket.off('error', reject);
      resolve(socket);
    });
    socket.once('error', reject);
  });
}

/**
 * A BlockDevice over one NBD connection, so that a workload (random-workload.ts) can drive a
 * real server process; a request the server fails throws, naming the NBD error.
 */
export function nbdDevice(client: NbdTestClient): BlockDevice {
  const check = async (what: string, reply: Promise<Reply>): Promise<Reply> => {
    const { error, data } = await reply;
    if (error !== 0) throw Object.assign(new Error(`NBD ${what} failed: error ${error}`), { nbdError: error });
    return { error, data };
  };
  const flags = (options?: WriteOptions) => (options?.fua ? CMD_FLAG_FUA : 0);
  return {
    sizeBytes: client.sizeBytes,
    readOnly: false,
    async read(buf, offset) {
      const { data } = await check('read', client.read(offset, buf.byteLength));
      buf.set(data!);
    },
    async write(data, offset, options) {
      const bytes = data instanceof Uint8Array ? Buffer.from(data) : Buffer.concat(data);
      await check('write', client.write(offset, bytes, flags(options)));
    },
    async writeZeroes(offset, length, options) {
      await check('write zeroes', client.request(CMD.WRITE_ZEROES, flags(options), offset, length));
    },
    async trim(offset, length, options) {
      await check('trim', client.request(CMD.TRIM, flags(options), offset, length));
    },
    async flush() {
      await check('flush', client.flush());
    },
    async close() {
      await client.disconnect().catch(() => client.socket.destroy());
    },
  };
}
