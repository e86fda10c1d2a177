/**
 * A client of the QEMU Machine Protocol over a unix socket: reads the greeting, negotiates
 * capabilities (`qmp_capabilities`), runs commands with ids and matches their replies, and
 * passes asynchronous events on as an EventEmitter ('event' with every event, and each
 * event under its own name, e.g. 'STOP'). A command QEMU refuses rejects with a QmpError
 * carrying QMP's error class and description; a lost connection rejects every command in
 * flight.
 *
 * Wire format: one JSON object per line (QEMU ends each with CRLF).
 */
import { EventEmitter } from 'node:events';
import { createConnection, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { FerryError, type ErrorCode } from '../../core/index.js';

export interface QmpGreeting {
  version: { qemu: { major: number; minor: number; micro: number }; package: string };
  capabilities: string[];
}

export interface QmpEvent {
  event: string;
  data?: Record<string, unknown>;
  timestamp: { seconds: number; microseconds: number };
}

export interface QmpConnectOptions {
  /**
   * Keep retrying for this long while the socket does not exist yet or refuses
   * connections (QEMU creates it shortly after launch). Default 0: try once. When it still
   * does not answer, connect rejects with a 'not-found' FerryError.
   */
  retryForMs?: number;
  /**
   * Time allowed for the greeting and the capabilities negotiation (default 10 s). A QMP
   * monitor serves one client at a time: while another holds it, the greeting does not come.
   */
  handshakeTimeoutMs?: number;
  /** Stops the retries (e.g. when the QEMU process has exited). */
  signal?: AbortSignal;
}

export interface QmpExecuteOptions {
  /** Rejects with an 'io' error if no reply came in time (default 60 s; 0 = wait forever). */
  timeoutMs?: number;
}

/** A command QEMU answered with an error. */
export class QmpError extends FerryError {
  constructor(
    readonly command: string,
    /** QMP's error class: GenericError, CommandNotFound, DeviceNotFound, ... */
    readonly qmpClass: string,
    readonly desc: string,
  ) {
    super(codeForClass(qmpClass), `QMP ${command}: ${qmpClass}: ${desc}`);
  }
}

function codeForClass(qmpClass: string): ErrorCode {
  switch (qmpClass) {
    case 'CommandNotFound':
      return 'bad-input';
    case 'DeviceNotFound':
      return 'not-found';
    default:
      // GenericError, DeviceNotActive, KVMMissingCap: QEMU refused in its current state.
      return 'invalid-state';
  }
}

interface Pending {
  command: string;
  resolve: (value: unknown) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout | undefined;
}

const maxLineBytes = 16 * 1024 * 1024;
const defaultExecuteTimeoutMs = 60_000;

export class QmpClient extends EventEmitter {
  private buffered = '';
  private nextId = 1;
  private readonly pending = new Map<string, Pending>();
  private closedError: FerryError | undefined;
  private readonly closedPromise: Promise<void>;
  private greetingWaiter: { resolve: (g: QmpGreeting) => void; reject: (err: Error) => void } | undefined;
  private greetingValue: QmpGreeting | undefined;

  private constructor(
    private readonly socket: Socket,
    readonly path: string,
  ) {
    super();
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => this.onData(chunk));
    socket.on('error', (err) => this.fail(new FerryError('io', `QMP ${path}: ${err.message}`, { cause: err })));
    this.closedPromise = new Promise((resolve) => socket.once('close', () => resolve()));
    socket.once('close', () => {
      this.fail(new FerryError('io', `QMP ${path}: connection closed`));
      this.emit('close');
    });
  }

  /** Connects, reads the greeting and leaves the capabilities negotiation done. */
  static async connect(path: string, options: QmpConnectOptions = {}): Promise<QmpClient> {
    const socket = await connectWithRetry(path, options.retryForMs ?? 0, options.signal);
    const client = new QmpClient(socket, path);
    try {
      const handshakeMs = options.handshakeTimeoutMs ?? 10_000;
      await client.readGreeting(handshakeMs);
      await client.execute('qmp_capabilities', undefined, { timeoutMs: handshakeMs });
      return client;
    } catch (err) {
      socket.destroy();
      throw err;
    }
  }

  /** What QEMU said when the connection opened (its version and capabilities). */
  get greeting(): QmpGreeting {
    return this.greetingValue!;
  }

  get closed(): boolean {
    return this.closedError !== undefined;
  }

  /** Runs a command; resolves with its `return` value. */
  execute<T = unknown>(command: string, args?: Record<string, unknown>, options: QmpExecuteOptions = {}): Promise<T> {
    if (this.closedError) return Promise.reject(new FerryError('io', `QMP ${command}: ${this.closedError.message}`));
    const id = `ferry-${this.nextId++}`;
    const timeoutMs = options.timeoutMs ?? defaultExecuteTimeoutMs;
    return new Promise<T>((resolve, reject) => {
      const pending: Pending = { command, resolve: resolve as (v: unknown) => void, reject, timer: undefined };
      if (timeoutMs > 0) {
        pending.timer = setTimeout(() => {
          this.pending.delete(id);
          reject(new FerryError('io', `QMP ${command}: no reply within ${timeoutMs} ms`));
        }, timeoutMs);
      }
      this.pending.set(id, pending);
      const message = JSON.stringify(args === undefined ? { execute: command, id } : { execute: command, arguments: args, id });
      this.socket.write(`${message}\n`);
    });
  }

  /** Resolves with the next event named `name` (e.g. 'STOP', 'SHUTDOWN'). */
  waitForEvent(name: string, timeoutMs: number): Promise<QmpEvent> {
    return new Promise((resolve, reject) => {
      const onEvent = (event: QmpEvent) => {
        cleanup();
        resolve(event);
      };
      const onClose = () => {
        cleanup();
        reject(new FerryError('io', `QMP ${this.path}: connection closed while waiting for event ${name}`));
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new FerryError('io', `QMP ${this.path}: no ${name} event within ${timeoutMs} ms`));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.off(name, onEvent);
        this.off('close', onClose);
      };
      this.on(name, onEvent);
      this.once('close', onClose);
    });
  }

  /** Closes the connection (QEMU keeps running). */
  async close(): Promise<void> {
    this.socket.end();
    const timer = setTimeout(() => this.socket.destroy(), 1000);
    await this.closedPromise;
    clearTimeout(timer);
  }

  private readGreeting(timeoutMs: number): Promise<QmpGreeting> {
    if (this.closedError) return Promise.reject(this.closedError);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new FerryError('io', `QMP ${this.path}: no greeting within ${timeoutMs} ms`)), timeoutMs);
      this.greetingWaiter = {
        resolve: (g) => {
          clearTimeout(timer);
          resolve(g);
        },
        reject: (err) => {
          clearTimeout(timer);
          reject(err);
        },
      };
    });
  }

  private onData(chunk: string): void {
    this.buffered += chunk;
    let newline: number;
    while ((newline = this.buffered.indexOf('\n')) >= 0) {
      const line = this.buffered.slice(0, newline).trim();
      this.buffered = this.buffered.slice(newline + 1);
      if (line.length > 0) this.onMessage(line);
    }
    if (this.buffered.length > maxLineBytes) {
      this.socket.destroy();
      this.fail(new FerryError('io', `QMP ${this.path}: a message longer than ${maxLineBytes} bytes`));
    }
  }

  private onMessage(line: string): void {
    let message: Record<string, unknown>;
    try {
      const parsed: unknown = JSON.parse(line);
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('not an object');
      message = parsed as Record<string, unknown>;
    } catch (err) {
      this.socket.destroy();
      this.fail(new FerryError('io', `QMP ${this.path}: unreadable message ${JSON.stringify(line.slice(0, 200))}: ${(err as Error).message}`));
      return;
    }
    if ('QMP' in message) {
      this.greetingValue = message.QMP as QmpGreeting;
      const waiter = this.greetingWaiter;
      this.greetingWaiter = undefined;
      waiter?.resolve(this.greetingValue);
      return;
    }
    if (typeof message.event === 'string') {
      const event = message as unknown as QmpEvent;
      this.emit('event', event);
      this.emit(event.event, event);
      return;
    }
    // A reply. QEMU answers a request it could not parse without an id: that one is the
    // oldest in flight, since replies come in order.
    const id = typeof message.id === 'string' ? message.id : this.pending.keys().next().value;
    if (id === undefined) return;
    const pending = this.pending.get(id);
    if (!pending) return; // timed out already
    this.pending.delete(id);
    clearTimeout(pending.timer);
    if ('return' in message) {
      pending.resolve(message.return);
    } else {
      const error = (message.error ?? {}) as { class?: unknown; desc?: unknown };
      pending.reject(new QmpError(pending.command, String(error.class ?? 'UnknownError'), String(error.desc ?? JSON.stringify(message))));
    }
  }

  private fail(err: FerryError): void {
    if (this.closedError) return;
    this.closedError = err;
    this.greetingWaiter?.reject(err);
    this.greetingWaiter = undefined;
    for (const [id, pending] of this.pending) {
      this.pending.delete(id);
      clearTimeout(pending.timer);
      pending.reject(new FerryError('io', `QMP ${pending.command}: ${err.message}`, { cause: err }));
    }
  }
}

async function connectWithRetry(path: string, retryForMs: number, signal: AbortSignal | undefined): Promise<Socket> {
  const deadline = Date.now() + retryForMs;
  for (;;) {
    try {
      return await connectOnce(path);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      const retriable = code === 'ENOENT' || code === 'ECONNREFUSED';
      if (signal?.aborted) throw new FerryError('aborted', `QMP ${path}: connect aborted`, { cause: signal.reason });
      if (!retriable || Date.now() >= deadline) {
        // 'not-found': nothing listens there (no socket, or the stale socket of a QEMU gone).
        throw new FerryError(retriable ? 'not-found' : 'io', `QMP ${path}: cannot connect: ${(err as Error).message}`, { cause: err });
      }
      await sleep(10); // QEMU opens its monitor within milliseconds of starting
    }
  }
}

function connectOnce(path: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = createConnection({ path });
    socket.once('connect', () => {
      socket.off('error', reject);
      resolve(socket);
    });
    socket.once('error', reject);
  });
}
