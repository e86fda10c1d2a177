/**
 * A sealed journal segment: an immutable file of coalesced, non-overlapping extents covering
 * the records firstSeq..lastSeq. This is what the delta shipper reads; everything it yields is
 * checked against the file's checksums first, and any damage is an error naming the file.
 */
import { open, stat } from 'node:fs/promises';
import { basename } from 'node:path';
import { crc32 } from 'node:zlib';
import { FerryError } from '../core/index.js';
import type { Extent } from './dirty-bitmap.js';
import { decodeEntryHeader, decodeSegmentHeader, entryHeaderBytes, headerCrcStart, parseSegmentName, segmentHeaderBytes } from './segment-codec.js';
import { SequentialReader, readAt } from './segment-file.js';

/** One coalesced extent: bytes to write, or a range that reads as zeros (zero or trim). */
export interface SealedExtent {
  kind: 'write' | 'zero';
  offset: number;
  length: number;
  /** The bytes, for writes; exactly `length` long. */
  data?: Buffer;
}

export class SealedSegment {
  /** Set by the journal when the segment is released or discarded; reading it is then an error. */
  retired: 'released' | 'discarded' | undefined;

  constructor(
    readonly path: string,
    readonly firstSeq: number,
    readonly lastSeq: number,
    /** Size of the sealed file: what shipping it costs, about. */
    readonly sizeBytes: number,
    readonly extentCount: number,
  ) {}

  get name(): string {
    return basename(this.path);
  }

  /** Loads a sealed segment's header and checks it against the file name and size. */
  static async load(path: string): Promise<SealedSegment> {
    const parsed = parseSegmentName(basename(path));
    if (parsed?.kind !== 'sealed') throw new FerryError('bad-input', `journal: ${path} is not a sealed segment name`);
    const handle = await open(path, 'r');
    try {
      const header = decodeSegmentHeader(await readAt(handle, 0, segmentHeaderBytes), path);
      if (header.kind !== 'sealed' || header.firstSeq !== parsed.firstSeq || header.lastSeq !== parsed.lastSeq) {
        throw new FerryError('checksum-mismatch', `journal segment ${path}: header (seq ${header.firstSeq}..${header.lastSeq}) does not match its name`);
      }
      const { size } = await handle.stat();
      return new SealedSegment(path, header.firstSeq, header.lastSeq, size, header.entryCount);
    } finally {
      await handle.close();
    }
  }

  /**
   * The extents in offset order, each verified before it is yielded. Data is read one extent
   * at a time, so memory stays at one extent (at most one record's size).
   */
  async *readExtents(): AsyncIterable<SealedExtent> {
    yield* this.scan(true);
  }

  /** Reads the whole file and checks every checksum, yielding nothing. */
  async verify(): Promise<void> {
    for await (const extent of this.scan(true)) void extent;
  }

  /**
   * The ranges the segment covers, from entry headers alone (data is skipped, not verified):
   * enough to mark them dirty when the journal is dropped for the bitmap.
   */
  async readRanges(): Promise<Extent[]> {
    const out: Extent[] = [];
    for await (const extent of this.scan(false)) out.push({ offset: extent.offset, length: extent.length });
    return out;
  }

  private async *scan(withData: boolean): AsyncGenerator<SealedExtent> {
    if (this.retired) throw new FerryError('invalid-state', `journal segment ${this.path} was ${this.retired}`);
    const fail = (what: string): FerryError => new FerryError('checksum-mismatch', `journal segment ${this.path}: ${what}`);
    let handle;
    try {
      handle = await open(this.path, 'r');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new FerryError('not-found', `journal segment ${this.path} does not exist`, { cause: err });
      throw new FerryError('io', `journal segment ${this.path}: ${(err as Error).message}`, { cause: err });
    }
    try {
      const size = (await stat(this.path)).size;
      const reader = new SequentialReader(handle);
      const header = decodeSegmentHeader(await reader.read(segmentHeaderBytes), this.path);
      if (header.kind !== 'sealed' || header.firstSeq !== this.firstSeq || header.lastSeq !== this.lastSeq || header.entryCount !== this.extentCount) {
        throw fail('segment header does not match the segment');
      }
      let end = -1;
      for (let i = 0; i < header.entryCount; i++) {
        const at = reader.position;
        const headerBuf = await reader.read(entryHeaderBytes);
        const entry = decodeEntryHeader(headerBuf);
        if (entry === undefined || entry.kind === 'trim') throw fail(`extent #${i} at file position ${at}: damaged extent header`);
        if (entry.seq < this.firstSeq || entry.seq > this.lastSeq || entry.offset < end || entry.length === 0) {
          throw fail(`extent #${i} at file position ${at}: out of order, empty or outside seq ${this.firstSeq}..${this.lastSeq}`);
        }
        end = entry.offset + entry.length;
        if (entry.kind === 'zero') {
          if (crc32(Buffer.alloc(0), headerCrcStart(headerBuf)) >>> 0 !== entry.crc) throw fail(`extent #${i} (disk offset ${entry.offset}): checksum mismatch`);
          yield { kind: 'zero', offset: entry.offset, length: entry.length };
          continue;
        }
        if (reader.position + entry.length > size) throw fail(`extent #${i} (disk offset ${entry.offset}): truncated`);
        if (!withData) {
          reader.skip(entry.length);
          yield { kind: 'write', offset: entry.offset, length: entry.length };
          continue;
        }
        const data = await reader.read(entry.length);
        if (data.length !== entry.length) throw fail(`extent #${i} (disk offset ${entry.offset}): truncated`);
        if (crc32(data, headerCrcStart(headerBuf)) >>> 0 !== entry.crc) throw fail(`extent #${i} (disk offset ${entry.offset}): checksum mismatch`);
        yield { kind: 'write', offset: entry.offset, length: entry.length, data };
      }
      if (reader.position !== size) throw fail(`${size - reader.position} unexpected bytes after the last extent`);
    } finally {
      await handle.close();
    }
  }
}
