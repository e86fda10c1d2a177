/**
 * The delta codec: captured changes of one disk, as one object in the store. Two kinds:
 *
 * - journal: the coalesced extents of journal records firstSeq..lastSeq (one sealed segment);
 * - resync: piece `part` of the resync that restarts replay at seq S after a fall back to
 *   the dirty bitmap: current contents of dirty blocks, read after the journal restarted at
 *   S. The last piece of a resync is marked final.
 *
 * Every delta belongs to one replication (one capture of one disk, from its first journal
 * seq): its id is in the key and in the header, and a reader checks that the two agree, so
 * a delta is never replayed into another replication (invariant 9).
 *
 * The object ends with the SHA-256 of everything before it; a reader verifies it before it
 * uses a byte. docs/FORMAT.md describes version 2 field by field.
 */
import { createHash } from 'node:crypto';
import { checkReplicationId, FerryError, writeDataBytes, type WriteData } from '../core/index.js';
import { replicationPrefix } from '../store/index.js';

export const deltaVersion = 3;
const magic = Buffer.from('FERRYDLT');
const headerBytes = 88;
/** Version 2 had no needsSeq: its header ends at byte 80. */
const v2HeaderBytes = 80;
const extentHeaderBytes = 24;
const trailerBytes = 32;

export type DeltaKind = 'journal' | 'resync';

/** One extent; a delta being encoded may give a write's data in pieces, a decoded one has one buffer. */
export interface DeltaExtent<Data extends WriteData = Uint8Array> {
  kind: 'write' | 'zero';
  offset: number;
  length: number;
  /** For writes: exactly `length` bytes. */
  data?: Data;
}

export interface DeltaHeader {
  kind: DeltaKind;
  /** The replication this delta belongs to (32 hex digits). */
  replication: string;
  diskSizeBytes: number;
  /** journal: first seq covered; resync: S, the seq replay continues from after it. */
  seq: number;
  /** journal: last seq covered; resync: the journal's next seq when this piece's reads were done. */
  endSeq: number;
  /** resync: piece number from 0; journal: 0. */
  part: number;
  /**
   * resync: tells apart resyncs that restart at the same S (a fall back with no journal
   * record in between); increases from one resync to the next. journal: 0.
   */
  generation: number;
  /** resync: the last piece of this resync. */
  final: boolean;
  /**
   * resync: every journal record below this seq must be applied before its first piece; they
   * were shipped as journal deltas before the tracker fell back, so the resync does not carry
   * them (a listing that lags must not let replay jump over them). 0 (and for journal
   * deltas): nothing is needed first.
   */
  needsSeq?: number;
  /** Source clock when the delta was made, ms since the epoch: for lag figures. */
  createdAtMs: number;
}

export interface Delta<Data extends WriteData = Uint8Array> extends DeltaHeader {
  extents: DeltaExtent<Data>[];
}

/** Key of a delta: sorts journal deltas by first seq, resync pieces by S then part. */
export function deltaKey(diskId: string, header: Pick<DeltaHeader, 'kind' | 'replication' | 'seq' | 'endSeq' | 'part' | 'generation'>): string {
  const seq = String(header.seq).padStart(20, '0');
  const prefix = replicationPrefix(diskId, header.replication);
  return header.kind === 'journal'
    ? `${prefix}${seq}-${String(header.endSeq).padStart(20, '0')}.journal`
    : `${prefix}${seq}-${String(header.generation).padStart(20, '0')}-${String(header.part).padStart(6, '0')}.resync`;
}

export interface DeltaName {
  key: string;
  kind: DeltaKind;
  replication: string;
  seq: number;
  /** resync: its generation; journal: 0. */
  generation: number;
  /** journal: last seq; resync: part number. */
  second: number;
}

const journalPattern = /\/([0-9a-f]{32})\/(\d{20})-(\d{20})\.journal$/;
const resyncPattern = /\/([0-9a-f]{32})\/(\d{20})-(\d{20})-(\d{6})\.resync$/;

export function parseDeltaKey(key: string): DeltaName | undefined {
  const journal = journalPattern.exec(key);
  if (journal) return { key, kind: 'journal', replication: journal[1]!, seq: Number(journal[2]), generation: 0, second: Number(journal[3]) };
  const resync = resyncPattern.exec(key);
  if (resync) return { key, kind: 'resync', replication: resync[1]!, seq: Number(resync[2]), generation: Number(resync[3]), second: Number(resync[4]) };
  return undefined;
}

export function encodeDelta(delta: Delta<WriteData>): Buffer {
  let size = headerBytes + trailerBytes;
  for (const e of delta.extents) size += extentHeaderBytes + (e.kind === 'write' ? e.length : 0);
  const out = Buffer.allocUnsafe(size);
  magic.copy(out, 0);
  out.writeUInt16LE(deltaVersion, 8);
  out.writeUInt8(delta.kind === 'journal' ? 1 : 2, 10);
  out.writeUInt8(delta.final ? 1 : 0, 11);
  out.writeUInt32LE(delta.extents.length, 12);
  out.writeBigUInt64LE(BigInt(delta.diskSizeBytes), 16);
  out.writeBigUInt64LE(BigInt(delta.seq), 24);
  out.writeBigUInt64LE(BigInt(delta.endSeq), 32);
  out.writeUInt32LE(delta.part, 40);
  out.writeUInt32LE(0, 44);
  out.writeBigUInt64LE(BigInt(delta.createdAtMs), 48);
  out.writeBigUInt64LE(BigInt(delta.generation), 56);
  out.write(checkReplicationId(delta.replication), 64, 16, 'hex');
  out.writeBigUInt64LE(BigInt(delta.needsSeq ?? 0), 80);
  let at = headerBytes;
  for (const e of delta.extents) {
    const dataBytes = e.data === undefined ? undefined : writeDataBytes(e.data);
    if (e.kind === 'write' && dataBytes !== e.length) {
      throw new FerryError('internal', `delta extent at ${e.offset}: ${dataBytes} bytes of data for length ${e.length}`);
    }
    // What a reader refuses is never written: such a delta would stop its replica for good.
    if (!(e.length > 0) || e.offset < 0 || e.offset + e.length > delta.diskSizeBytes) {
      throw new FerryError('internal', `delta extent ${e.offset}+${e.length} is invalid for a ${delta.diskSizeBytes}-byte disk`);
    }
    out.writeUInt8(e.kind === 'write' ? 1 : 2, at);
    out.fill(0, at + 1, at + 8);
    out.writeBigUInt64LE(BigInt(e.offset), at + 8);
    out.writeBigUInt64LE(BigInt(e.length), at + 16);
    at += extentHeaderBytes;
    if (e.kind === 'write') {
      for (const piece of e.data instanceof Uint8Array ? [e.data] : e.data!) {
        out.set(piece, at);
        at += piece.byteLength;
      }
    }
  }
  createHash('sha256').update(out.subarray(0, at)).digest().copy(out, at);
  return out;
}

/** The bytes a delta's SHA-256 trailer covers (all but the trailer). */
export function deltaHashedBytes(bytes: Buffer): Buffer {
  return bytes.subarray(0, Math.max(0, bytes.length - trailerBytes));
}

/**
 * Verifies and decodes a delta; `name` is the object, for messages. Data is not copied.
 * `sha256`: the SHA-256 (hex) of deltaHashedBytes(bytes), when the caller computed it (on a
 * worker thread); computed here otherwise.
 */
export function decodeDelta(bytes: Buffer, name: string, sha256?: string): Delta {
  const corrupt = (what: string) => new FerryError('checksum-mismatch', `delta ${name} is corrupt: ${what}`);
  if (bytes.length < 16 + trailerBytes) throw corrupt(`${bytes.length} bytes is shorter than any delta (truncated?)`);
  if (!bytes.subarray(0, 8).equals(magic)) throw corrupt('bad magic');
  const body = deltaHashedBytes(bytes);
  const expected = bytes.subarray(bytes.length - trailerBytes);
  const matches = sha256 === undefined ? createHash('sha256').update(body).digest().equals(expected) : sha256 === expected.toString('hex');
  if (!matches) throw corrupt('SHA-256 mismatch (truncated or damaged)');
  const version = bytes.readUInt16LE(8);
  if (version !== deltaVersion && version !== 2) {
    throw new FerryError('unsupported-version', `delta ${name} has format version ${version}; this ferry reads versions 2 and ${deltaVersion}`);
  }
  const ownHeaderBytes = version === 2 ? v2HeaderBytes : headerBytes;
  if (bytes.length < ownHeaderBytes + trailerBytes) throw corrupt(`${bytes.length} bytes is shorter than any delta (truncated?)`);
  const kindByte = bytes.readUInt8(10);
  if (kindByte !== 1 && kindByte !== 2) throw corrupt(`unknown kind ${kindByte}`);
  const header: DeltaHeader = {
    kind: kindByte === 1 ? 'journal' : 'resync',
    final: bytes.readUInt8(11) === 1,
    diskSizeBytes: Number(bytes.readBigUInt64LE(16)),
    seq: Number(bytes.readBigUInt64LE(24)),
    endSeq: Number(bytes.readBigUInt64LE(32)),
    part: bytes.readUInt32LE(40),
    createdAtMs: Number(bytes.readBigUInt64LE(48)),
    generation: Number(bytes.readBigUInt64LE(56)),
    replication: bytes.toString('hex', 64, 80),
  };
  const needsSeq = version === 2 ? 0 : Number(bytes.readBigUInt64LE(80));
  if (needsSeq > 0) header.needsSeq = needsSeq;
  const count = bytes.readUInt32LE(12);
  const extents: DeltaExtent[] = [];
  let at = ownHeaderBytes;
  for (let i = 0; i < count; i++) {
    if (at + extentHeaderBytes > body.length) throw corrupt(`extent ${i} runs past the end`);
    const op = bytes.readUInt8(at);
    const offset = Number(bytes.readBigUInt64LE(at + 8));
    const length = Number(bytes.readBigUInt64LE(at + 16));
    at += extentHeaderBytes;
    if ((op !== 1 && op !== 2) || length === 0 || offset + length > header.diskSizeBytes) {
      throw corrupt(`extent ${i} (op ${op}, ${offset}+${length}) is invalid for a ${header.diskSizeBytes}-byte disk`);
    }
    if (op === 1) {
      if (at + length > body.length) throw corrupt(`extent ${i} data runs past the end`);
      extents.push({ kind: 'write', offset, length, data: bytes.subarray(at, at + length) });
      at += length;
    } else {
      extents.push({ kind: 'zero', offset, length });
    }
  }
  if (at !== body.length) throw corrupt(`${body.length - at} unexpected bytes after the last extent`);
  return { ...header, extents };
}
