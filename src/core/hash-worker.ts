/**
 * SHA-256 on worker threads. On the main thread, hashing (slower than a disk reads) would
 * hold up the event loop, and with it every read and write of a copy or seed export:
 *
 * - ChunkHasher: the SHA-256 of one chunk, answered asynchronously (several may be asked at
 *   once); it may spread chunks over several workers, so that a copy hashes on every core;
 * - VolumeHasher: the SHA-256 of a stream of pieces (a volume), with a count of bytes hashed.
 *
 * Bytes in a SharedArrayBuffer (a copy's or export's chunk buffers) are shared, not copied; other
 * pieces (tar headers, sealed chunks) are copied into the message. A shared buffer may be
 * reused only once its hash is answered (chunks) or `hashedBytes` has passed it (volumes).
 */
import { Worker } from 'node:worker_threads';
import { sha256Hex } from './bytes.js';
import { FerryError } from './errors.js';

const workerSource = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
let stream = createHash('sha256');
parentPort.on('message', (m) => {
  const bytes = m.buffer ? new Uint8Array(m.buffer, m.offset, m.length) : undefined;
  if (m.type === 'chunks') {
    const hex = m.chunks.map((c) => createHash('sha256').update(new Uint8Array(c.buffer, c.offset, c.length)).digest('hex'));
    parentPort.postMessage({ type: 'chunks', hex });
  } else if (m.type === 'data') {
    stream.update(bytes);
    parentPort.postMessage({ type: 'hashed', length: m.length });
  } else if (m.type === 'digest') {
    parentPort.postMessage({ type: 'digest', hex: stream.digest('hex') });
    stream = createHash('sha256');
  }
});
`;

type Reply = { type: 'chunks'; hex: string[] } | { type: 'hashed'; length: number } | { type: 'digest'; hex: string };

/** Where a piece's bytes are for the worker: shared memory in place, or a copy of just them (moved, not cloned). */
function placeOf(piece: Uint8Array): { where: { buffer: ArrayBufferLike; offset: number; length: number }; transfer: ArrayBuffer[] } {
  if (piece.buffer instanceof SharedArrayBuffer) return { where: { buffer: piece.buffer, offset: piece.byteOffset, length: piece.byteLength }, transfer: [] };
  // Cloning `piece` would copy its whole backing store; set() is a memcpy, the
  // Uint8Array(typedArray) constructor is not.
  const copy = new Uint8Array(piece.byteLength);
  copy.set(piece);
  return { where: { buffer: copy.buffer, offset: 0, length: copy.byteLength }, transfer: [copy.buffer] };
}

abstract class HashWorker {
  protected readonly worker: Worker;
  protected failure: Error | undefined;

  constructor() {
    this.worker = new Worker(workerSource, { eval: true });
    this.worker.on('message', (reply: Reply) => this.onReply(reply));
    this.worker.on('error', (err) => {
      this.failure = err;
      this.onFailure(err);
    });
  }

  protected abstract onReply(reply: Reply): void;
  protected abstract onFailure(err: Error): void;

  protected post(type: 'data', piece: Uint8Array): void {
    const { where, transfer } = placeOf(piece);
    this.worker.postMessage({ type, ...where }, transfer);
  }

  protected postDigest(): void {
    this.worker.postMessage({ type: 'digest' });
  }

  protected error(): FerryError {
    return new FerryError('internal', `hashing on a worker thread failed: ${this.failure?.message}`, { cause: this.failure });
  }

  async close(): Promise<void> {
    await this.worker.terminate();
  }
}

/**
 * One worker hashing whole chunks; its answers come in the order it was asked. Chunks asked
 * in one burst (before the microtasks already queued have run) go in one message: a message
 * costs about as much as hashing a few KiB, so small chunks asked together, such as the
 * deltas an applier reads ahead, are hashed for far less. Idle, it does not keep the
 * process alive (an owner that is never closed does not hang its exit).
 */
class ChunkWorker extends HashWorker {
  private readonly waiting: Array<{ resolve: (hex: string) => void; reject: (err: Error) => void }> = [];
  /** Chunks asked in this turn, not yet posted. */
  private unsent: Array<ReturnType<typeof placeOf>> = [];

  constructor() {
    super();
    this.worker.unref();
  }

  /** Chunks asked and not yet answered. */
  get pending(): number {
    return this.waiting.length;
  }

  hash(data: Uint8Array): Promise<string> {
    if (this.failure) return Promise.reject(this.error());
    return new Promise((resolve, reject) => {
      if (this.waiting.length === 0) this.worker.ref();
      this.waiting.push({ resolve, reject });
      if (this.unsent.length === 0) queueMicrotask(() => this.postUnsent());
      this.unsent.push(placeOf(data));
    });
  }

  private postUnsent(): void {
    const chunks = this.unsent;
    this.unsent = [];
    this.worker.postMessage({ type: 'chunks', chunks: chunks.map((c) => c.where) }, chunks.flatMap((c) => c.transfer));
  }

  protected onReply(reply: Reply): void {
    if (reply.type !== 'chunks') return;
    for (const hex of reply.hex) this.waiting.shift()?.resolve(hex);
    if (this.waiting.length === 0) this.worker.unref();
  }

  protected onFailure(): void {
    for (const w of this.waiting.splice(0)) w.reject(this.error());
  }
}

/**
 * The SHA-256 of whole chunks on `workers` worker threads (default 1): each chunk goes to the
 * worker with the fewest chunks waiting. A copy that reads faster than one worker hashes
 * gains from a second one on a machine with a core to spare.
 */
export class ChunkHasher {
  private readonly workers: ChunkWorker[];

  constructor(workers = 1) {
    if (!Number.isSafeInteger(workers) || workers < 1) throw new FerryError('bad-input', `hash workers: expected a positive integer, received ${workers}`);
    this.workers = Array.from({ length: workers }, () => new ChunkWorker());
  }

  /** The SHA-256 of `data` (hex); shared memory is hashed on a worker, anything else here. */
  hash(data: Uint8Array): Promise<string> {
    if (!(data.buffer instanceof SharedArrayBuffer)) return Promise.resolve(sha256Hex(data));
    let idlest = this.workers[0]!;
    for (const worker of this.workers) if (worker.pending < idlest.pending) idlest = worker;
    return idlest.hash(data);
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((worker) => worker.close()));
  }
}

/**
 * Pieces that are not in shared memory are copied into this ring of shared memory, which the
 * worker reads in place: that is all the memory their copies take. (Copies posted on their own
 * would be freed only when the worker collects garbage, which it seldom does.)
 */
const stagingBytes = 32 * 1024 * 1024;

export class VolumeHasher extends HashWorker {
  private hashed = 0;
  private staging: Buffer | undefined;
  /** Bytes copied into the ring so far, and how many of them are hashed. */
  private staged = 0;
  private stagedHashed = 0;
  /** For each piece posted and not yet hashed, in order: its bytes in the ring. */
  private readonly inFlight: number[] = [];
  private digestWaiter: { resolve: (hex: string) => void; reject: (err: Error) => void } | undefined;
  /** Called whenever `hashedBytes` grows. */
  onHashed: () => void = () => {};

  /** Bytes hashed since the last digest. */
  get hashedBytes(): number {
    if (this.failure) throw this.error();
    return this.hashed;
  }

  update(piece: Uint8Array): void {
    if (piece.buffer instanceof SharedArrayBuffer || piece.byteLength > stagingBytes - (this.staged - this.stagedHashed)) {
      this.inFlight.push(0);
      this.post('data', piece); // shared already, or no room in the ring: a copy of its own
      return;
    }
    this.staging ??= Buffer.from(new SharedArrayBuffer(stagingBytes));
    for (let rest = piece; rest.byteLength > 0; ) {
      const at = this.staged % stagingBytes;
      const n = Math.min(rest.byteLength, stagingBytes - at);
      this.staging.set(rest.subarray(0, n), at);
      this.inFlight.push(n);
      this.post('data', this.staging.subarray(at, at + n));
      this.staged += n;
      rest = rest.subarray(n);
    }
  }

  /** The SHA-256 of every byte since the last digest; starts a new one. */
  digest(): Promise<string> {
    if (this.failure) return Promise.reject(this.error());
    return new Promise((resolve, reject) => {
      this.digestWaiter = { resolve, reject };
      this.postDigest();
    });
  }

  protected onReply(reply: Reply): void {
    if (reply.type === 'hashed') {
      this.hashed += reply.length;
      this.stagedHashed += this.inFlight.shift() ?? 0;
      this.onHashed();
    } else if (reply.type === 'digest') {
      const waiter = this.digestWaiter;
      this.digestWaiter = undefined;
      this.hashed = 0;
      waiter?.resolve(reply.hex);
    }
  }

  protected onFailure(): void {
    this.digestWaiter?.reject(this.error());
    this.digestWaiter = undefined;
    this.onHashed();
  }
}
