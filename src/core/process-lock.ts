/**
 * An exclusive lock held for a process's life, with an explicit hand-over: it makes sure one
 * replica applier at a time works on a replica (a `replica apply --follow` follower, or a
 * cutover).
 *
 * The lock is a Linux abstract unix socket, `\0ferry-lock/<sha256 hex of the key>`: binding
 * the name is exclusive, and the kernel frees it the moment its socket closes, also when the
 * process is SIGKILLed, so unlike a lock file it can never go stale.
 *
 * Protocol (lines of UTF-8 ending in '\n'): the holder answers every connection with one
 * JSON line, `{"pid":…,"purpose":…,"sinceMs":…,"yieldable":…}`. A requester that wants the
 * lock handed over sends `yield`. A holder acquired without `onYield` replies
 * `refused <reason>`; a yieldable one awaits `onYield()` (its work stops), closes its server
 * (the name is free), and replies `yielded`. The requester binds the name and keeps that
 * connection open while it holds the lock; when the connection closes (released, or the
 * requester died), the yielder binds the name again, waiting while anyone else holds it,
 * and calls `onRetaken()`.
 *
 * A held lock never keeps the process alive by itself (its sockets are unref'd; callers
 * release explicitly); a yielded one does, as it still has to retake the lock.
 */
import { createHash } from 'node:crypto';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { FerryError, throwIfAborted } from './errors.js';
import { Logger } from './log.js';

export interface LockHolderInfo { pid: number; purpose: string; sinceMs: number; yieldable: boolean }

export interface ProcessLockOptions {
  /** What holds the lock, for the message another process gets (e.g. 'ferry replica apply --follow'). */
  purpose: string;
  /** What is locked, for messages: e.g. 'replica /dest/vm1.img'. */
  description: string;
  /** Ask a yieldable holder to hand the lock over instead of failing (default false). */
  takeOver?: boolean;
  /**
   * Makes this holder yieldable (default: not yieldable, hand-overs are refused): called when
   * another process asks for the lock; resolve once the work under the lock has stopped. If
   * it rejects, the hand-over is refused and the lock stays held.
   */
  onYield?: () => Promise<void>;
  /** Called when work stopped by `onYield` may go on: the yielded lock is held again (default none). */
  onRetaken?: () => void;
  /** How long a holder may take to say who it is before it counts as hung, in ms (default 5000). */
  answerTimeoutMs?: number;
  /** Aborts `acquire`, including a wait for a holder's hand-over (default none). */
  signal?: AbortSignal;
  /** For hand-overs and unexpected errors while retaking (default silent). */
  log?: Logger;
}

type State = 'held' | 'yielded' | 'released';

export class ProcessLock {
  #state: State = 'held';
  #sinceMs = Date.now();
  #server: Server | undefined;
  #timer: NodeJS.Timeout | undefined;
  #released: Promise<void> | undefined;
  readonly #sockets = new Set<Socket>(); // accepted, and the one to a holder that yielded to us
  readonly #waiters = new Set<{ resolve: () => void; reject: (err: Error) => void }>();
  readonly #log: Logger;

  private constructor(
    private readonly name: string,
    private readonly options: ProcessLockOptions,
    server: Server,
  ) {
    this.#log = options.log ?? Logger.silent();
    this.#serve(server);
  }

  static async acquire(key: string, options: ProcessLockOptions): Promise<ProcessLock> {
    const name = `\0ferry-lock/${createHash('sha256').update(key).digest('hex')}`;
    for (let attempt = 1; ; attempt++) {
      throwIfAborted(options.signal);
      const server = await tryListen(name);
      if (server) return new ProcessLock(name, options, server);
      const socket = connect(name);
      try {
        const lines = lineReader(socket, options.description, options.signal);
        const first = await lines.next(options.answerTimeoutMs ?? 5000);
        if (first === undefined) {
          socket.destroy();
          if (attempt < 10) continue; // the holder just went away: try to bind again
          throw new FerryError('conflict', `${options.description} is locked, but its holder keeps going away`);
        }
        const info = parseInfo(first, options.description);
        const held = `${options.description} is in use by pid ${info.pid} (${info.purpose}) since ${new Date(info.sinceMs).toISOString()}`;
        if (!options.takeOver) {
          throw new FerryError('conflict', `${held}; ${info.yieldable ? 'it hands over if asked to take over' : 'stop it first'}`);
        }
        socket.write('yield\n');
        const reply = await lines.next(); // onYield may take long to stop its work: no timeout
        if (reply?.startsWith('refused')) throw new FerryError('conflict', `${held}; it refused to hand over: ${reply.slice(8)}`);
        if (reply === undefined && attempt < 10) {
          socket.destroy();
          continue; // it went away (died or released) instead of handing over: try to bind again
        }
        if (reply !== 'yielded') throw new FerryError('conflict', `${held}; it answered ${JSON.stringify(reply)} instead of handing over`);
        const taken = await tryListen(name, 20);
        if (!taken) throw new FerryError('conflict', `${held}; another process took it during the hand-over`);
        const lock = new ProcessLock(name, options, taken);
        lock.#log.info('took over lock', { lock: options.description, from: info.pid });
        socket.unref();
        socket.on('close', () => lock.#sockets.delete(socket));
        lock.#sockets.add(socket);
        return lock;
      } catch (err) {
        socket.destroy();
        throw err instanceof FerryError ? err : new FerryError('io', `${options.description}: lock: ${String(err)}`, { cause: err });
      }
    }
  }

  /** False from the moment a hand-over starts until the lock is retaken, and once released. */
  get held(): boolean {
    return this.#state === 'held';
  }

  /** Resolves when the lock is held (at once unless it was yielded); rejects if signal aborts or the lock was released. */
  whenHeld(signal?: AbortSignal): Promise<void> {
    if (this.#state === 'held') return Promise.resolve();
    if (this.#state === 'released') return Promise.reject(this.#releasedError());
    return new Promise((resolve, reject) => {
      const onAbort = () => waiter.reject(new FerryError('aborted', 'operation aborted', { cause: signal?.reason }));
      const waiter = {
        resolve: () => done(resolve),
        reject: (err: Error) => done(() => reject(err)),
      };
      const done = (settle: () => void) => {
        this.#waiters.delete(waiter);
        signal?.removeEventListener('abort', onAbort);
        settle();
      };
      this.#waiters.add(waiter);
      if (signal?.aborted) onAbort();
      else signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Frees the name and ends every hand-over connection; idempotent. */
  release(): Promise<void> {
    this.#released ??= new Promise<void>((resolve) => {
      this.#state = 'released';
      clearTimeout(this.#timer);
      for (const waiter of [...this.#waiters]) waiter.reject(this.#releasedError());
      const server = this.#server;
      this.#server = undefined;
      if (server) server.close(() => resolve());
      else resolve();
      for (const socket of this.#sockets) socket.destroy();
    });
    return this.#released;
  }

  #serve(server: Server): void {
    this.#server = server;
    server.unref();
    server.on('error', (err) => this.#log.warn('lock server error', { lock: this.options.description, error: String(err) }));
    server.on('connection', (socket) => this.#answer(socket));
  }

  #answer(socket: Socket): void {
    if (this.#state === 'released') return void socket.destroy();
    socket.unref();
    this.#sockets.add(socket);
    socket.on('close', () => this.#sockets.delete(socket));
    const info: LockHolderInfo = { pid: process.pid, purpose: this.options.purpose, sinceMs: this.#sinceMs, yieldable: this.options.onYield !== undefined };
    socket.write(`${JSON.stringify(info)}\n`);
    lineReader(socket, this.options.description)
      .next()
      .then((line) => (line === 'yield' ? this.#yield(socket) : void socket.end()))
      .catch(() => socket.destroy()); // garbage or a broken peer: nothing of ours is at stake
  }

  async #yield(socket: Socket): Promise<void> {
    const onYield = this.options.onYield;
    const refuse = (reason: string) => socket.end(`refused ${reason.replace(/\s+/g, ' ')}\n`);
    if (!onYield) return void refuse(`${this.options.purpose} does not hand over`);
    if (this.#state !== 'held') return void refuse('it is handing over to another process');
    this.#state = 'yielded';
    try {
      await onYield();
    } catch (err) {
      if (this.#released) return;
      this.#setHeld(); // its work did not stop (as far as we know): no onRetaken
      return void refuse(`stopping its work failed: ${err instanceof Error ? err.message : String(err)}`);
    }
    if (this.#released) return;
    if (socket.destroyed) return this.#retaken(); // the requester went away while we stopped: resume
    this.#server?.close();
    this.#server = undefined;
    socket.ref(); // keep the process alive while it waits to retake the lock
    socket.write('yielded\n');
    this.#log.info('handed over lock', { lock: this.options.description });
    socket.on('close', () => this.#retake());
  }

  #retake(): void {
    if (this.#state !== 'yielded') return;
    void tryListen(this.name).then(
      (server) => {
        if (server && this.#state !== 'yielded') server.close();
        else if (server) {
          this.#serve(server);
          this.#retaken();
        } else if (this.#state === 'yielded') this.#timer = setTimeout(() => this.#retake(), 100);
      },
      (err: unknown) => {
        this.#log.warn('retaking lock failed; trying again', { lock: this.options.description, error: String(err) });
        if (this.#state === 'yielded') this.#timer = setTimeout(() => this.#retake(), 1000);
      },
    );
  }

  #retaken(): void {
    this.#sinceMs = Date.now();
    this.#setHeld();
    this.#log.info('retook lock', { lock: this.options.description });
    try {
      this.options.onRetaken?.();
    } catch (err) {
      this.#log.error('onRetaken failed', { lock: this.options.description, error: String(err) });
    }
  }

  #setHeld(): void {
    this.#state = 'held';
    for (const waiter of [...this.#waiters]) waiter.resolve();
  }

  #releasedError(): FerryError {
    return new FerryError('invalid-state', `${this.options.description}: lock was released`);
  }
}

/** Binds the name: the server, or undefined while someone else holds it (tries `attempts` times, 50 ms apart). */
async function tryListen(name: string, attempts = 1): Promise<Server | undefined> {
  for (let attempt = 1; ; attempt++) {
    const server = createServer();
    const bound = await new Promise<boolean>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) =>
        err.code === 'EADDRINUSE' ? resolve(false) : reject(new FerryError('io', `binding the lock socket failed: ${err.message}`, { cause: err })),
      );
      server.listen(name, () => resolve(true));
    });
    if (bound) return server;
    if (attempt >= attempts) return undefined;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/**
 * Reads lines of at most 1 KiB from a socket; `next` gives undefined once the peer has gone
 * (closed, reset, or not listening), and throws if `timeoutMs` passes first.
 */
function lineReader(socket: Socket, what: string, signal?: AbortSignal) {
  let buffer = '';
  let gone = false;
  let failure: Error | undefined;
  let wake = () => {};
  socket.setEncoding('utf8');
  socket.on('data', (text: string) => ((buffer += text), wake()));
  socket.on('error', (err: NodeJS.ErrnoException) => {
    if (!['ECONNREFUSED', 'ECONNRESET', 'EPIPE'].includes(err.code ?? '')) failure ??= err;
    wake();
  });
  socket.on('close', () => ((gone = true), wake()));
  return {
    async next(timeoutMs?: number): Promise<string | undefined> {
      let timedOut = false;
      const timer = timeoutMs === undefined ? undefined : setTimeout(() => ((timedOut = true), wake()), timeoutMs);
      const onAbort = () => wake();
      signal?.addEventListener('abort', onAbort);
      try {
        for (;;) {
          throwIfAborted(signal);
          const end = buffer.indexOf('\n');
          if (end >= 0) {
            const line = buffer.slice(0, end);
            buffer = buffer.slice(end + 1);
            return line;
          }
          if (buffer.length > 1024) throw new FerryError('conflict', `${what}: a peer on its lock socket sent a line longer than 1 KiB`);
          if (failure) throw failure;
          if (gone) return undefined;
          if (timedOut) throw new FerryError('conflict', `${what} is locked, but its holder did not say who it is within ${timeoutMs} ms; it may be hung`);
          await new Promise<void>((resolve) => (wake = resolve));
        }
      } finally {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
      }
    },
  };
}

function parseInfo(line: string, description: string): LockHolderInfo {
  try {
    const info = JSON.parse(line) as Partial<LockHolderInfo>;
    if (typeof info.pid === 'number' && typeof info.purpose === 'string' && typeof info.sinceMs === 'number' && typeof info.yieldable === 'boolean') {
      return info as LockHolderInfo;
    }
  } catch {
    // not a ferry lock holder
  }
  throw new FerryError('conflict', `${description} is locked by a process that does not speak ferry's lock protocol (it said ${JSON.stringify(line.slice(0, 80))})`);
}
