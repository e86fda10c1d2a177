/**
 * The on-disk layout of journal segment files (format version 2; version 1 is still read):
 *
 *   segment header (32 bytes)
 *     magic "FJSG" | version u16 | kind u8 | reserved u8
 *     firstSeq u64 | lastSeq u64 | entryCount u32 | crc32 u32
 *   then entries, each:
 *     entry header (32 bytes)
 *       seq u64 | offset u64 | length u64 | kind u8 (1 write, 2 zero, 3 trim) | reserved[3]
 *       crc32 u32 over the header's first 28 bytes and then the data
 *     data: `length` bytes for a write, nothing for zero and trim
 *
 * Kind 1 ("records"): raw records in seq order, as the VM wrote them; lastSeq and entryCount
 * are 0 (the file name of a sealed segment carries its last seq). Version 2 writes only this
 * kind: sealing renames the open file, and readers coalesce (last write wins). Kind 2
 * ("coalesced"): non-overlapping extents in offset order, each with the seq its bytes came
 * from; written by version 1 sealing, still read. Integers are big-endian. The crc lets
 * recovery tell a torn tail from a complete record, and readers detect corruption.
 */
import { crc32 } from 'node:zlib';
import { FerryError, type WriteData } from '../core/index.js';

export const segmentFormatVersion = 2;
/** Versions this build reads: 1 differs only in how it sealed (kind 2, coalesced). */
const readableVersions = new Set([1, 2]);
export const segmentHeaderBytes = 32;
export const entryHeaderBytes = 32;
const magic = 0x464a_5347; // "FJSG"

export type SegmentKind = 'records' | 'coalesced';
export type RecordKind = 'write' | 'zero' | 'trim';

const segmentKindCode: Record<SegmentKind, number> = { records: 1, coalesced: 2 };
const recordKindCode: Record<RecordKind, number> = { write: 1, zero: 2, trim: 3 };
const recordKindByCode: Record<number, RecordKind | undefined> = { 1: 'write', 2: 'zero', 3: 'trim' };

export interface SegmentHeader {
  version: number;
  kind: SegmentKind;
  firstSeq: number;
  lastSeq: number;
  entryCount: number;
}

export interface EntryHeader {
  seq: number;
  kind: RecordKind;
  offset: number;
  length: number;
  /** crc32 over the header's first 28 bytes and then the data. */
  crc: number;
}

export function encodeSegmentHeader(header: Omit<SegmentHeader, 'version'>): Buffer {
  const buf = Buffer.alloc(segmentHeaderBytes);
  buf.writeUInt32BE(magic, 0);
  buf.writeUInt16BE(segmentFormatVersion, 4);
  buf.writeUInt8(segmentKindCode[header.kind], 6);
  buf.writeBigUInt64BE(BigInt(header.firstSeq), 8);
  buf.writeBigUInt64BE(BigInt(header.lastSeq), 16);
  buf.writeUInt32BE(header.entryCount, 24);
  buf.writeUInt32BE(crc32(buf.subarray(0, 28)), 28);
  return buf;
}

/** Parses and checks a segment header; `file` names the segment in errors. */
export function decodeSegmentHeader(buf: Buffer, file: string): SegmentHeader {
  if (buf.length < segmentHeaderBytes || buf.readUInt32BE(0) !== magic) {
    throw new FerryError('checksum-mismatch', `journal segment ${file}: missing or damaged segment header`);
  }
  const version = buf.readUInt16BE(4);
  if (!readableVersions.has(version)) {
    throw new FerryError('unsupported-version', `journal segment ${file}: format version ${version}, this build reads ${[...readableVersions].join(' and ')}`);
  }
  if (crc32(buf.subarray(0, 28)) !== buf.readUInt32BE(28)) {
    throw new FerryError('checksum-mismatch', `journal segment ${file}: segment header checksum mismatch`);
  }
  const kindCode = buf.readUInt8(6);
  const kind: SegmentKind | undefined = kindCode === 1 ? 'records' : kindCode === 2 ? 'coalesced' : undefined;
  if (kind === undefined) throw new FerryError('checksum-mismatch', `journal segment ${file}: unknown segment kind ${kindCode}`);
  return {
    version,
    kind,
    firstSeq: Number(buf.readBigUInt64BE(8)),
    lastSeq: Number(buf.readBigUInt64BE(16)),
    entryCount: buf.readUInt32BE(24),
  };
}

/**
 * Writes a whole entry into `target` at `at` (entryBytes long): the header and, for a write,
 * `data`. The crc is left to `checksumEntries`, which must run before the entry leaves memory.
 */
export function encodeEntryInto(target: Buffer, at: number, seq: number, kind: RecordKind, offset: number, length: number, data?: WriteData): void {
  writeEntryPrefix(target, at, seq, kind, offset, length);
  if (data instanceof Uint8Array) target.set(data, at + entryHeaderBytes);
  else if (data !== undefined) {
    let to = at + entryHeaderBytes;
    for (const piece of data) {
      target.set(piece, to);
      to += piece.byteLength;
    }
  }
}

/**
 * Computes and stores the crc of every entry in `pieces`, which hold whole entries end to end.
 * An entry's data may span pieces (the journal keeps received buffers as they came); its
 * header lies whole in one piece, a Buffer the crc is written into.
 */
export function checksumEntries(pieces: readonly Uint8Array[]): void {
  let header: Buffer | undefined; // the entry whose data is being summed, and where its header is
  let headerAt = 0;
  let dataLeft = 0;
  let crc = 0;
  for (const piece of pieces) {
    for (let at = 0; at < piece.byteLength; ) {
      if (header === undefined) {
        if (!(piece instanceof Buffer) || at + entryHeaderBytes > piece.length) throw new FerryError('internal', 'journal: an entry header does not lie whole in one buffer');
        const length = piece.readUInt32BE(at + 16) * 0x1_0000_0000 + piece.readUInt32BE(at + 20);
        header = piece;
        headerAt = at;
        dataLeft = piece[at + 24] === recordKindCode.write ? length : 0;
        crc = crc32(piece.subarray(at, at + 28));
        at += entryHeaderBytes;
      } else {
        const n = Math.min(dataLeft, piece.byteLength - at);
        crc = crc32(piece.subarray(at, at + n), crc);
        dataLeft -= n;
        at += n;
      }
      if (dataLeft === 0) {
        header.writeUInt32BE(crc >>> 0, headerAt + 28);
        header = undefined;
      }
    }
  }
}

/**
 * Parses an entry header. Returns undefined when the bytes cannot be a header (unknown kind,
 * absurd numbers): callers decide whether that is a torn tail or corruption.
 */
export function decodeEntryHeader(buf: Buffer): EntryHeader | undefined {
  if (buf.length < entryHeaderBytes) return undefined;
  const kind = recordKindByCode[buf.readUInt8(24)];
  if (kind === undefined || buf.readUIntBE(25, 3) !== 0) return undefined;
  const seq = buf.readBigUInt64BE(0);
  const offset = buf.readBigUInt64BE(8);
  const length = buf.readBigUInt64BE(16);
  const max = BigInt(Number.MAX_SAFE_INTEGER);
  if (seq > max || offset > max || length > max) return undefined;
  return { seq: Number(seq), kind, offset: Number(offset), length: Number(length), crc: buf.readUInt32BE(28) };
}

/** The crc an entry's header stores must equal this, fed with the data that follows. */
export function headerCrcStart(buf: Buffer): number {
  return crc32(buf.subarray(0, 28));
}

/** Bytes an entry occupies in a segment file. */
export function entryBytes(kind: RecordKind, length: number): number {
  return entryHeaderBytes + (kind === 'write' ? length : 0);
}

/** Writes the header's first 28 bytes (reserved bytes zeroed); integers as two 32-bit halves, no BigInt. */
function writeEntryPrefix(buf: Buffer, at: number, seq: number, kind: RecordKind, offset: number, length: number): void {
  writeUInt64BE(buf, seq, at);
  writeUInt64BE(buf, offset, at + 8);
  writeUInt64BE(buf, length, at + 16);
  buf.writeUInt32BE(recordKindCode[kind] * 0x100_0000, at + 24); // kind u8, then reserved[3] = 0
}

/** A safe integer as a big-endian u64; out-of-range values are refused like writeBigUInt64BE's. */
function writeUInt64BE(buf: Buffer, value: number, at: number): void {
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`journal entry field ${value} is not a non-negative safe integer`);
  const hi = Math.floor(value / 0x1_0000_0000);
  buf.writeUInt32BE(hi, at);
  buf.writeUInt32BE(value - hi * 0x1_0000_0000, at + 4);
}

/** File names: the seq numbers are zero-padded so that names sort in seq order. */
const seqDigits = 16;
const openPattern = /^open-(\d{16})\.jseg$/;
const sealedPattern = /^sealed-(\d{16})-(\d{16})\.jseg$/;

export function openSegmentName(firstSeq: number): string {
  return `open-${pad(firstSeq)}.jseg`;
}

export function sealedSegmentName(firstSeq: number, lastSeq: number): string {
  return `sealed-${pad(firstSeq)}-${pad(lastSeq)}.jseg`;
}

export function parseSegmentName(name: string): { kind: 'open'; firstSeq: number } | { kind: 'sealed'; firstSeq: number; lastSeq: number } | undefined {
  const open = openPattern.exec(name);
  if (open) return { kind: 'open', firstSeq: Number(open[1]) };
  const sealed = sealedPattern.exec(name);
  if (sealed) return { kind: 'sealed', firstSeq: Number(sealed[1]), lastSeq: Number(sealed[2]) };
  return undefined;
}

function pad(seq: number): string {
  return String(seq).padStart(seqDigits, '0');
}
