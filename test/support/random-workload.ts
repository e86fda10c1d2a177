/**
 * A seeded, randomized, concurrent write workload for any BlockDevice, with an optional
 * shadow copy of what the disk should hold afterwards.
 *
 *   const workload = new RandomWorkload({ seed: 7, sizeBytes: disk.sizeBytes, shadow: base });
 *   const result = await workload.run(device);
 *   // workload.shadow now equals what `device` must hold
 *
 * Several writers run at once; each issues its own seeded sequence of writes, zeroes, trims,
 * flushes and reads (512 B to 4 MiB by default, aligned to 512, sizes log-uniform so small IOs
 * dominate), some FUA, some in a small "hot" region so that writers overlap. Each writer's
 * sequence depends on the seed alone; how writers interleave depends on IO timing.
 *
 * The shadow is updated when an IO is *issued*, in issue order. That is exactly what a device
 * which keeps overlapping IOs in issue order (ferry's CaptureFilter) must hold at the end; for
 * a device that does not, use `writers: 1` or `overlap: 0` for an exact shadow.
 */
import type { BlockDevice } from '../../src/core/index.js';

export type WorkloadOpKind = 'write' | 'zero' | 'trim' | 'flush' | 'read';

export interface WorkloadOp {
  writer: number;
  /** Issue order across all writers. */
  index: number;
  kind: WorkloadOpKind;
  offset: number;
  length: number;
  fua: boolean;
  /** The bytes written (writes only). */
  data?: Uint8Array;
}

export interface RandomWorkloadOptions {
  seed: number;
  sizeBytes: number;
  /** Concurrent writers. Default 4. */
  writers?: number;
  /** IOs per writer. Default 50. */
  opsPerWriter?: number;
  /** Smallest and largest IO, multiples of 512. Defaults 512 B and 4 MiB (clamped to the disk). */
  minIoBytes?: number;
  maxIoBytes?: number;
  /** Fractions of IOs (the rest are writes). Defaults: zero 0.1, trim 0.05, flush 0.05, read 0.05. */
  zeroFraction?: number;
  trimFraction?: number;
  flushFraction?: number;
  readFraction?: number;
  /** Fraction of writes/zeroes/trims sent with FUA. Default 0.05. */
  fuaFraction?: number;
  /** Fraction of IOs aimed at the hot region (first `hotBytes` of the disk). Default 0.5. */
  overlap?: number;
  /** Size of the hot region. Default 1 MiB (clamped to the disk). */
  hotBytes?: number;
  /** Keep a shadow: pass the disk's current contents (copied) or `true` for an all-zero disk. */
  shadow?: Uint8Array | boolean;
}

export interface RunOptions {
  signal?: AbortSignal;
  /** Called before each IO is issued (after the shadow was updated). */
  onIssue?: (op: WorkloadOp) => void;
  /** Called after each IO completed; may be async (the writer waits for it). */
  onComplete?: (op: WorkloadOp) => void | Promise<void>;
}

export interface WorkloadResult {
  ops: number;
  bytesWritten: number;
  counts: Record<WorkloadOpKind, number>;
}

export const sector = 512;

/** mulberry32: a small, fast, seedable PRNG; good enough for test workloads. */
export function createPrng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Fills a buffer with PRNG bytes (fast: 32 bits at a time). */
export function fillRandom(buf: Uint8Array, random: () => number): void {
  const words = Math.floor(buf.byteLength / 4);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  for (let i = 0; i < words; i++) view.setUint32(i * 4, (random() * 4294967296) >>> 0);
  for (let i = words * 4; i < buf.byteLength; i++) buf[i] = (random() * 256) >>> 0;
}

export class RandomWorkload {
  /** What the device must hold after `run` (if a shadow was asked for). */
  readonly shadow: Buffer | undefined;
  private readonly o: Required<Omit<RandomWorkloadOptions, 'shadow'>>;
  private issued = 0;

  constructor(options: RandomWorkloadOptions) {
    const maxIo = Math.min(options.maxIoBytes ?? 4 * 1024 * 1024, options.sizeBytes);
    this.o = {
      seed: options.seed,
      sizeBytes: options.sizeBytes,
      writers: options.writers ?? 4,
      opsPerWriter: options.opsPerWriter ?? 50,
      minIoBytes: Math.min(options.minIoBytes ?? sector, maxIo),
      maxIoBytes: maxIo,
      zeroFraction: options.zeroFraction ?? 0.1,
      trimFraction: options.trimFraction ?? 0.05,
      flushFraction: options.flushFraction ?? 0.05,
      readFraction: options.readFraction ?? 0.05,
      fuaFraction: options.fuaFraction ?? 0.05,
      overlap: options.overlap ?? 0.5,
      hotBytes: Math.min(options.hotBytes ?? 1024 * 1024, options.sizeBytes),
    };
    if (options.sizeBytes % sector !== 0 || this.o.minIoBytes % sector !== 0 || this.o.maxIoBytes % sector !== 0) {
      throw new Error('random workload: sizes must be multiples of 512');
    }
    if (options.shadow === true) this.shadow = Buffer.alloc(options.sizeBytes);
    else if (options.shadow instanceof Uint8Array) this.shadow = Buffer.from(options.shadow);
  }

  /** Runs every writer to completion against `device`. */
  async run(device: BlockDevice, options: RunOptions = {}): Promise<WorkloadResult> {
    const result: WorkloadResult = { ops: 0, bytesWritten: 0, counts: { write: 0, zero: 0, trim: 0, flush: 0, read: 0 } };
    const writers = Array.from({ length: this.o.writers }, (_, w) => this.runWriter(device, w, result, options));
    await Promise.all(writers);
    return result;
  }

  private async runWriter(device: BlockDevice, writer: number, result: WorkloadResult, options: RunOptions): Promise<void> {
    const random = createPrng((this.o.seed * 1_000_003 + writer * 7919) >>> 0);
    for (let i = 0; i < this.o.opsPerWriter; i++) {
      if (options.signal?.aborted) return;
      const op = this.nextOp(random, writer);
      this.applyToShadow(op);
      options.onIssue?.(op);
      switch (op.kind) {
        case 'write':
          await device.write(op.data!, op.offset, { fua: op.fua });
          result.bytesWritten += op.length;
          break;
        case 'zero':
          await device.writeZeroes(op.offset, op.length, { fua: op.fua });
          break;
        case 'trim':
          await device.trim(op.offset, op.length, { fua: op.fua });
          break;
        case 'flush':
          await device.flush();
          break;
        case 'read':
          await device.read(new Uint8Array(op.length), op.offset);
          break;
      }
      result.ops++;
      result.counts[op.kind]++;
      await options.onComplete?.(op);
    }
  }

  private nextOp(random: () => number, writer: number): WorkloadOp {
    const pick = random();
    const o = this.o;
    let kind: WorkloadOpKind = 'write';
    let edge = o.zeroFraction;
    if (pick < edge) kind = 'zero';
    else if (pick < (edge += o.trimFraction)) kind = 'trim';
    else if (pick < (edge += o.flushFraction)) kind = 'flush';
    else if (pick < (edge += o.readFraction)) kind = 'read';
    const index = this.issued++;
    if (kind === 'flush') return { writer, index, kind, offset: 0, length: 0, fua: false };
    // Log-uniform size between min and max, in sectors.
    const minSectors = o.minIoBytes / sector;
    const maxSectors = o.maxIoBytes / sector;
    const sectors = Math.min(maxSectors, Math.floor(minSectors * Math.pow(maxSectors / minSectors, random())));
    const length = sectors * sector;
    const region = random() < o.overlap ? Math.max(o.hotBytes, length) : o.sizeBytes;
    const slots = (Math.min(region, o.sizeBytes) - length) / sector + 1;
    const offset = Math.floor(random() * slots) * sector;
    const fua = kind !== 'read' && random() < o.fuaFraction;
    const op: WorkloadOp = { writer, index, kind, offset, length, fua };
    if (kind === 'write') {
      const data = new Uint8Array(length);
      fillRandom(data, random);
      op.data = data;
    }
    return op;
  }

  private applyToShadow(op: WorkloadOp): void {
    if (!this.shadow) return;
    if (op.kind === 'write') this.shadow.set(op.data!, op.offset);
    else if (op.kind === 'zero' || op.kind === 'trim') this.shadow.fill(0, op.offset, op.offset + op.length);
  }
}
