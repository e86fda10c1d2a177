/**
 * The dirty bitmap: one bit per tracking block (default 64 KiB) saying "this block changed
 * since it was last taken for shipping". It is the bandwidth-optimal way to track (only the
 * current contents of a block are shipped, however often it was rewritten) and the fallback
 * when the journal overflows (docs/DESIGN.md invariant 8).
 *
 * Invariant 4: `takeRuns` clears the bits of the runs it returns *before* the caller reads
 * those blocks for shipping, so a write that lands after the clear sets the bit again and is
 * shipped next round. Nothing here is asynchronous, so a clear and a mark never interleave.
 */
import { FerryError, badInput, sectorBytes } from '../core/index.js';
import { crc32 } from 'node:zlib';

export const defaultBlockSizeBytes = 64 * 1024;

/** A contiguous byte range of the disk. */
export interface Extent {
  offset: number;
  length: number;
}

const magic = 0x4642_4d31; // "FBM1"
const formatVersion = 1;
/** magic u32, version u16, reserved u16, blockSizeBytes u32, crc32(bits) u32, sizeBytes u64. */
const headerBytes = 24;

export class DirtyBitmap {
  readonly blockCount: number;
  private readonly bits: Uint8Array;
  private count = 0;
  /** No byte of `bits` below this index has a bit set; lets `takeRuns` skip clean regions. */
  private lowestDirtyByte = 0;

  constructor(
    readonly sizeBytes: number,
    readonly blockSizeBytes: number = defaultBlockSizeBytes,
  ) {
    if (!Number.isSafeInteger(sizeBytes) || sizeBytes < 0) throw badInput('sizeBytes', sizeBytes, 'a non-negative whole number of bytes');
    if (!Number.isSafeInteger(blockSizeBytes) || blockSizeBytes <= 0 || blockSizeBytes % sectorBytes !== 0 || blockSizeBytes > 2 ** 31) {
      throw badInput('blockSizeBytes', blockSizeBytes, `a positive multiple of ${sectorBytes} bytes up to 2 GiB`);
    }
    this.blockCount = Math.ceil(sizeBytes / blockSizeBytes);
    this.bits = new Uint8Array(Math.ceil(this.blockCount / 8));
  }

  /** Number of dirty blocks. */
  get dirtyCount(): number {
    return this.count;
  }

  /** Bytes covered by dirty blocks (the last block may be short). */
  get dirtyBytes(): number {
    let bytes = this.count * this.blockSizeBytes;
    const last = this.blockCount - 1;
    if (last >= 0 && this.isDirty(last)) bytes -= this.blockCount * this.blockSizeBytes - this.sizeBytes;
    return bytes;
  }

  /** Marks every block that `length` bytes at `offset` touch. A zero length marks nothing. */
  mark(offset: number, length: number): void {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.sizeBytes) {
      throw new FerryError('bad-input', `dirty bitmap: range ${offset}+${length} is outside the disk (${this.sizeBytes} bytes)`);
    }
    if (length === 0) return;
    this.setRange(Math.floor(offset / this.blockSizeBytes), Math.floor((offset + length - 1) / this.blockSizeBytes) + 1);
  }

  markAll(): void {
    this.setRange(0, this.blockCount);
  }

  clear(): void {
    this.bits.fill(0);
    this.count = 0;
    this.lowestDirtyByte = this.bits.length;
  }

  isDirty(block: number): boolean {
    if (!Number.isSafeInteger(block) || block < 0 || block >= this.blockCount) throw badInput('block', block, `a block number below ${this.blockCount}`);
    return (this.bits[block >>> 3]! & (1 << (block & 7))) !== 0;
  }

  /**
   * Takes dirty runs, lowest offset first, until about `maxBytes` are taken: returns
   * contiguous extents (clipped to the disk's end) and clears their bits before returning.
   * At least one block is taken when any is dirty, so a small `maxBytes` still progresses.
   */
  takeRuns(maxBytes: number): Extent[] {
    if (!(maxBytes > 0)) throw badInput('maxBytes', maxBytes, 'a positive number of bytes');
    const runs: Extent[] = [];
    let budgetBlocks = Math.max(1, Math.floor(maxBytes / this.blockSizeBytes));
    let block = this.nextDirty(this.lowestDirtyByte * 8);
    while (block !== -1 && budgetBlocks > 0) {
      let end = block;
      while (end < this.blockCount && budgetBlocks > 0 && this.isDirty(end)) {
        this.clearBit(end);
        end++;
        budgetBlocks--;
      }
      const offset = block * this.blockSizeBytes;
      runs.push({ offset, length: Math.min(end * this.blockSizeBytes, this.sizeBytes) - offset });
      block = budgetBlocks > 0 ? this.nextDirty(end) : -1;
    }
    return runs;
  }

  /** The bitmap as bytes, for persisting; `deserialize` checks it on the way back. */
  serialize(): Buffer {
    const out = Buffer.alloc(headerBytes + this.bits.length);
    out.writeUInt32BE(magic, 0);
    out.writeUInt16BE(formatVersion, 4);
    out.writeUInt32BE(this.blockSizeBytes, 8);
    out.writeUInt32BE(crc32(this.bits), 12);
    out.writeBigUInt64BE(BigInt(this.sizeBytes), 16);
    out.set(this.bits, headerBytes);
    return out;
  }

  static deserialize(data: Uint8Array, source = 'dirty bitmap'): DirtyBitmap {
    const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    if (buf.length < headerBytes || buf.readUInt32BE(0) !== magic) throw new FerryError('bad-input', `${source}: not a ferry dirty bitmap`);
    const version = buf.readUInt16BE(4);
    if (version !== formatVersion) throw new FerryError('unsupported-version', `${source}: dirty bitmap version ${version}, this build reads ${formatVersion}`);
    const bitmap = new DirtyBitmap(Number(buf.readBigUInt64BE(16)), buf.readUInt32BE(8));
    const bits = buf.subarray(headerBytes);
    if (bits.length !== bitmap.bits.length || crc32(bits) !== buf.readUInt32BE(12)) {
      throw new FerryError('checksum-mismatch', `${source}: dirty bitmap is truncated or corrupt`);
    }
    bitmap.bits.set(bits);
    bitmap.count = 0;
    for (const byte of bitmap.bits) bitmap.count += popcount8[byte]!;
    bitmap.lowestDirtyByte = 0;
    return bitmap;
  }

  private setRange(first: number, end: number): void {
    let block = first;
    // Whole bytes in the middle are set eight blocks at a time (a huge trim marks fast).
    while (block < end && (block & 7) !== 0) this.setBit(block++);
    while (block + 8 <= end) {
      const index = block >>> 3;
      this.count += 8 - popcount8[this.bits[index]!]!;
      this.bits[index] = 0xff;
      block += 8;
    }
    while (block < end) this.setBit(block++);
    if (first < end) this.lowestDirtyByte = Math.min(this.lowestDirtyByte, first >>> 3);
  }

  private setBit(block: number): void {
    const index = block >>> 3;
    const mask = 1 << (block & 7);
    if ((this.bits[index]! & mask) === 0) {
      this.bits[index] = this.bits[index]! | mask;
      this.count++;
    }
  }

  private clearBit(block: number): void {
    const index = block >>> 3;
    const mask = 1 << (block & 7);
    if ((this.bits[index]! & mask) !== 0) {
      this.bits[index] = this.bits[index]! & ~mask;
      this.count--;
    }
  }

  /** The first dirty block at or after `from`, or -1; skips clean bytes whole. */
  private nextDirty(from: number): number {
    if (this.count === 0) {
      this.lowestDirtyByte = this.bits.length;
      return -1;
    }
    let index = from >>> 3;
    // Bits below `from` in its first byte are not wanted.
    let byte = index < this.bits.length ? this.bits[index]! & (0xff << (from & 7)) : 0;
    while (byte === 0) {
      index++;
      if (index >= this.bits.length) return -1;
      byte = this.bits[index]!;
    }
    if (from <= this.lowestDirtyByte * 8) this.lowestDirtyByte = index;
    const block = index * 8 + (31 - Math.clz32(byte & -byte));
    return block < this.blockCount ? block : -1;
  }
}

const popcount8 = Uint8Array.from({ length: 256 }, (_, n) => {
  let bits = 0;
  for (let v = n; v !== 0; v >>= 1) bits += v & 1;
  return bits;
});
