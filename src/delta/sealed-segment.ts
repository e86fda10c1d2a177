/**
 * A sealed journal segment: the records firstSeq..lastSeq (the open segment's, unchanged;
 * see segment-codec.ts), in memory or in an immutable file. This is what the delta shipper
 * reads. Reading coalesces the records (last write wins, trim as zero) into non-overlapping
 * extents in offset order, and every byte yielded comes from a record whose checksum was
 * verified; any damage is an error naming the file.
 *
 * A segment sealed in memory is written to its file (`spill`) only when the journal needs
 * the memory back or a FLUSH needs it durable; one shipped and released before never touches
 * the disk.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { basename } from 'node:path';
import { crc32 } from 'node:zlib';
import { FerryError, writeDataBytes, writeFileAtomic, type WriteData } from '../core/index.js';
import type { Extent } from './dirty-bitmap.js';
import { ExtentMap } from './extent-map.js';
import { checksumEntries, decodeEntryHeader, decodeSegmentHeader, entryHeaderBytes, headerCrcStart, parseSegmentName, segmentHeaderBytes, type SegmentHeader } from './segment-codec.js';
import { readAt } from './segment-file.js';
import { journalSlabs } from './slab-pool.js';

/** One coalesced extent: bytes to write, or a range that reads as zeros (zero or trim). */
export interface SealedExtent {
  kind: 'write' | 'zero';
  offset: number;
  length: number;
  /**
   * The bytes, for writes; exactly `length` long. Several pieces when they lie in several
   * buffers of a segment in memory (the data the journal kept as it was received).
   */
  data?: WriteData;
}

/**
 * Files up to this size are read whole, once (a default segment is 8 MiB); larger ones a
 * record at a time, so memory stays at one record.
 */
const readWholeBytes = 64 * 1024 * 1024;

/** One entry, located by its header. */
interface Entry {
  kind: 'write' | 'zero';
  offset: number;
  length: number;
  dataPos: number;
  crcStart: number;
  crc: number;
}

export class SealedSegment {
  /** Set by the journal when the segment is released or discarded; reading it is then an error. */
  retired: 'released' | 'discarded' | undefined;
  /**
   * The file's bytes while the segment lives in memory: an entry's header lies whole in one
   * buffer, its data may span several.
   */
  private image: Uint8Array[] | undefined;
  private spilling: Promise<void> | undefined;
  private slabs: Buffer[] = [];

  constructor(
    readonly path: string,
    readonly firstSeq: number,
    readonly lastSeq: number,
    /** Size of the sealed file: what shipping it costs, at most. */
    readonly sizeBytes: number,
  ) {}

  /**
   * A segment whose bytes (`image`, the file it would be) are in memory, not yet in its file;
   * `slabs` are the pool's slabs the image lies in, given back by `recycle`. Its entries'
   * crcs are computed only if the image goes to its file.
   */
  static inMemory(path: string, firstSeq: number, lastSeq: number, image: Uint8Array[], slabs: Buffer[]): SealedSegment {
    const segment = new SealedSegment(path, firstSeq, lastSeq, image.reduce((sum, b) => sum + b.byteLength, 0));
    segment.image = image;
    segment.slabs = slabs;
    return segment;
  }

  /**
   * Gives the slabs of a segment released from memory back to the pool. Only for a segment
   * whose readers are done (the shipper releases a segment once its delta is stored).
   */
  recycle(): void {
    if (this.image === undefined || this.retired !== 'released') return;
    this.image = undefined;
    for (const slab of this.slabs.splice(0)) journalSlabs.give(slab);
  }

  /** Bytes held in memory (0 once in its file). */
  get memoryBytes(): number {
    return this.image === undefined ? 0 : this.sizeBytes;
  }

  /**
   * Writes an in-memory segment to its file (writeFileAtomic; the caller syncs the directory)
   * and frees the memory. Does nothing for a segment already in its file, or released
   * meanwhile.
   */
  spill(): Promise<void> {
    this.spilling ??= this.writeImage().finally(() => (this.spilling = undefined));
    return this.spilling;
  }

  /** Resolves once no spill is running (the journal waits for this before deleting the file). */
  async settled(): Promise<void> {
    await this.spilling?.catch(() => {});
  }

  private async writeImage(): Promise<void> {
    const image = this.image;
    if (image === undefined || this.retired) return;
    checksumEntries(image.slice(1)); // [0] is the segment header
    // Retired while being written: no file, and the image stays (recycle gives its slabs back).
    const written = await writeFileAtomic(this.path, image, { syncDirectory: false, commit: () => this.retired === undefined });
    if (written) {
      // Its memory goes: the slabs are let go, not given back to the pool (a reader may still
      // hold the image; the garbage collector frees them after). A segment waiting to ship,
      // in its file, holds none, however long the shipper takes.
      this.image = undefined;
      this.slabs = [];
    }
  }

  get name(): string {
    return basename(this.path);
  }

  /** Loads a sealed segment's header and checks it against the file name. */
  static async load(path: string): Promise<SealedSegment> {
    const parsed = parseSegmentName(basename(path));
    if (parsed?.kind !== 'sealed') throw new FerryError('bad-input', `journal: ${path} is not a sealed segment name`);
    const handle = await open(path, 'r');
    try {
      checkHeader(decodeSegmentHeader(await readAt(handle, 0, segmentHeaderBytes), path), parsed.firstSeq, parsed.lastSeq, path);
      const { size } = await handle.stat();
      return new SealedSegment(path, parsed.firstSeq, parsed.lastSeq, size);
    } finally {
      await handle.close();
    }
  }

  /** The coalesced extents in offset order, each verified before it is yielded. */
  async *readExtents(): AsyncIterable<SealedExtent> {
    const file = await this.openFile();
    try {
      const { entries, map } = await this.index(file);
      const verified = new Set<number>();
      let record: { index: number; data: Uint8Array[] } | undefined;
      for (const piece of map.pieces()) {
        if (piece.kind === 'zero') {
          yield { kind: 'zero', offset: piece.offset, length: piece.length };
          continue;
        }
        const entry = entries[piece.entry]!;
        if (record?.index !== piece.entry) {
          const data = await file.readPieces(entry.dataPos, entry.length);
          // A record split by later writes yields several pieces: with the whole file in
          // memory its bytes cannot change between them, so it is checked once. Bytes that
          // never left memory have nothing to be checked against.
          if (!file.trusted && !(file.whole && verified.has(piece.entry))) {
            let crc = entry.crcStart;
            for (const bytes of data) crc = crc32(bytes, crc);
            if (writeDataBytes(data) !== entry.length || crc >>> 0 !== entry.crc) {
              throw this.damaged(`record at disk offset ${entry.offset}: checksum mismatch`);
            }
            verified.add(piece.entry);
          }
          record = { index: piece.entry, data };
        }
        const data = slicePieces(record.data, 0, piece.offset - entry.offset, piece.length);
        yield { kind: 'write', offset: piece.offset, length: piece.length, data: data.length === 1 ? data[0]! : data };
      }
    } finally {
      await file.close();
    }
  }

  /** Reads the whole file and checks every checksum, yielding nothing. */
  async verify(): Promise<void> {
    for await (const extent of this.readExtents()) void extent;
  }

  /**
   * The ranges the segment's records cover, from entry headers alone (data is not read or
   * verified): enough to mark them dirty when the journal is dropped for the bitmap.
   */
  async readRanges(): Promise<Extent[]> {
    const file = await this.openFile();
    try {
      const { entries } = await this.index(file);
      return entries.map(({ offset, length }) => ({ offset, length }));
    } finally {
      await file.close();
    }
  }

  /**
   * Walks the entry headers: checks their order and that they end exactly at the end of the
   * file, verifies zero and trim records (their crc covers only the header), and coalesces.
   */
  private async index(file: SegmentFile): Promise<{ entries: Entry[]; map: ExtentMap }> {
    const header = decodeSegmentHeader(await file.read(0, segmentHeaderBytes), this.path);
    checkHeader(header, this.firstSeq, this.lastSeq, this.path);
    const coalesced = header.kind === 'coalesced';
    const entries: Entry[] = [];
    const map = new ExtentMap();
    let pos = segmentHeaderBytes;
    let end = -1;
    while (pos < file.size) {
      const n = entries.length;
      const headerBuf = await file.read(pos, entryHeaderBytes);
      const e = decodeEntryHeader(headerBuf);
      if (e === undefined) throw this.damaged(`entry #${n} at file position ${pos}: damaged or truncated entry header`);
      // Records follow each other seq by seq; version 1's coalesced extents are in offset order.
      const inOrder = coalesced
        ? e.kind !== 'trim' && e.seq >= this.firstSeq && e.seq <= this.lastSeq && e.offset >= end && e.length > 0 && n < header.entryCount
        : e.seq === this.firstSeq + n;
      if (!inOrder) throw this.damaged(`entry #${n} at file position ${pos}: seq ${e.seq} out of order`);
      end = e.offset + e.length;
      const dataBytes = e.kind === 'write' ? e.length : 0;
      if (pos + entryHeaderBytes + dataBytes > file.size) throw this.damaged(`entry #${n} (disk offset ${e.offset}): truncated`);
      const crcStart = headerCrcStart(headerBuf);
      if (dataBytes === 0 && !file.trusted && crc32(Buffer.alloc(0), crcStart) >>> 0 !== e.crc) throw this.damaged(`entry #${n} (disk offset ${e.offset}): checksum mismatch`);
      const kind = e.kind === 'write' ? 'write' : 'zero';
      entries.push({ kind, offset: e.offset, length: e.length, dataPos: pos + entryHeaderBytes, crcStart, crc: e.crc });
      map.put({ offset: e.offset, length: e.length, kind, seq: e.seq, entry: n });
      pos += entryHeaderBytes + dataBytes;
    }
    const complete = coalesced ? entries.length === header.entryCount : entries.length === this.lastSeq - this.firstSeq + 1;
    if (!complete) throw this.damaged(`holds ${entries.length} entries, expected ${coalesced ? header.entryCount : this.lastSeq - this.firstSeq + 1}: truncated`);
    return { entries, map };
  }

  private async openFile(): Promise<SegmentFile> {
    if (this.retired) throw new FerryError('invalid-state', `journal segment ${this.path} was ${this.retired}`);
    if (this.image !== undefined) return SegmentFile.fromImage(this.image);
    try {
      return await SegmentFile.open(this.path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new FerryError('not-found', `journal segment ${this.path} does not exist`, { cause: err });
      throw new FerryError('io', `journal segment ${this.path}: ${(err as Error).message}`, { cause: err });
    }
  }

  private damaged(what: string): FerryError {
    return new FerryError('checksum-mismatch', `journal segment ${this.path}: ${what}`);
  }
}

/** Version 2 seals by renaming (kind "records"); version 1 sealed files are "coalesced". */
function checkHeader(header: SegmentHeader, firstSeq: number, lastSeq: number, path: string): void {
  const ok =
    header.firstSeq === firstSeq &&
    (header.version === 1 ? header.kind === 'coalesced' && header.lastSeq === lastSeq : header.kind === 'records');
  if (!ok) throw new FerryError('checksum-mismatch', `journal segment ${path}: header (version ${header.version}, ${header.kind}, first seq ${header.firstSeq}) does not match its name`);
}

/** A segment file for reading: whole in memory (read at once when small), or read where asked. */
class SegmentFile {
  private constructor(
    private readonly handle: FileHandle | undefined,
    readonly size: number,
    /** The bytes, in pieces, and where each piece starts. */
    private readonly pieces: Uint8Array[] | undefined,
    private readonly starts: number[] = [],
    /** The bytes never left memory (a segment sealed in memory): crcs are not checked. */
    readonly trusted = false,
  ) {}

  static async open(path: string): Promise<SegmentFile> {
    const handle = await open(path, 'r');
    try {
      const { size } = await handle.stat();
      if (size > readWholeBytes) return new SegmentFile(handle, size, undefined);
      const bytes = await readAt(handle, 0, size);
      await handle.close();
      return new SegmentFile(undefined, size, [bytes], [0]);
    } catch (err) {
      await handle.close();
      throw err;
    }
  }

  static fromImage(image: Uint8Array[]): SegmentFile {
    const starts: number[] = [];
    let size = 0;
    for (const piece of image) {
      starts.push(size);
      size += piece.byteLength;
    }
    return new SegmentFile(undefined, size, image, starts, true);
  }

  get whole(): boolean {
    return this.pieces !== undefined;
  }

  /** `length` bytes at `pos` in one buffer, fewer at the end of the file. Callers must not change them. */
  async read(pos: number, length: number): Promise<Buffer> {
    if (this.pieces === undefined) return readAt(this.handle!, pos, length);
    const pieces = await this.readPieces(pos, length);
    // An entry header lies whole in one piece; only a damaged image spans pieces here.
    return pieces.length === 1 ? asBuffer(pieces[0]!) : Buffer.concat(pieces);
  }

  /** `length` bytes at `pos` as views of the pieces they lie in, fewer at the end of the file. */
  async readPieces(pos: number, length: number): Promise<Uint8Array[]> {
    const pieces = this.pieces;
    if (pieces === undefined) return [await readAt(this.handle!, pos, length)];
    // The piece holding `pos` (binary search).
    let lo = 0;
    let hi = pieces.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (this.starts[mid]! <= pos) lo = mid;
      else hi = mid - 1;
    }
    return slicePieces(pieces, lo, pos - this.starts[lo]!, length);
  }

  async close(): Promise<void> {
    await this.handle?.close();
  }
}

/**
 * Views of `length` bytes (fewer if the pieces end first) of the bytes `pieces` hold end to
 * end, from byte `from` of piece `first` on.
 */
function slicePieces(pieces: readonly Uint8Array[], first: number, from: number, length: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let i = first; i < pieces.length && length > 0; i++) {
    const piece = pieces[i]!;
    if (from >= piece.byteLength) {
      from -= piece.byteLength;
      continue;
    }
    const n = Math.min(length, piece.byteLength - from);
    out.push(piece.subarray(from, from + n));
    from = 0;
    length -= n;
  }
  return out;
}

function asBuffer(bytes: Uint8Array): Buffer {
  return bytes instanceof Buffer ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
