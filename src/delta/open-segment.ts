/**
 * The open journal segment: the file raw records are appended to, in seq order, as the VM
 * writes. An append is synchronous: the record is copied into memory (so the caller may reuse
 * its buffer at once); the data of a large write whose caller vouches that it never changes
 * (bytes received from the network) is kept as it is instead. The file is made and written
 * only when asked: `writeQueued` hands everything appended to the kernel in one positioned
 * writev (group commit) on the threadpool, `sync` adds fdatasync. Sealing a segment that
 * never had to be written keeps it in memory (the delta shipper usually ships it before
 * anything asks for it on disk), and it never has a file; otherwise it renames the file: the
 * sealed file is the open file, its records written once.
 *
 * An index of the records (not their data) stays in memory: a fall back to the bitmap marks
 * its ranges dirty, and the journal counts its bytes.
 */
import { open, rename, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { FerryError, Logger, fsyncDirectory, writeFully, type WriteData } from '../core/index.js';
import {
  checksumEntries,
  decodeEntryHeader,
  decodeSegmentHeader,
  encodeEntryInto,
  encodeSegmentHeader,
  entryBytes,
  entryHeaderBytes,
  headerCrcStart,
  openSegmentName,
  sealedSegmentName,
  segmentHeaderBytes,
  type RecordKind,
} from './segment-codec.js';
import { SealedSegment } from './sealed-segment.js';
import { journalSlabs } from './slab-pool.js';
import { readAt } from './segment-file.js';

export interface RecordIndexEntry {
  seq: number;
  kind: RecordKind;
  offset: number;
  length: number;
}

const verifyChunkBytes = 1024 * 1024;
const resolved: Promise<void> = Promise.resolve();
/** Records are copied into slabs (see slab-pool.ts); one over a quarter of a slab gets its own buffer. */
const slabBytes = journalSlabs.bufferBytes;
/**
 * Immutable data of at least this size is kept, not copied: below it a copy costs less than
 * the extra buffers. Each kept piece is one more iovec when written, and pins the received
 * chunks it is a view of (Node reads a socket 64 KiB at a time): the memory held may exceed
 * the records' bytes, at worst 8x at this size (16 KiB straddling two chunks).
 */
const keepMinBytes = 16 * 1024;

export class OpenSegment {
  readonly records: RecordIndexEntry[] = [];
  /** File size once everything appended is written. */
  private logicalBytes: number;
  private writtenBytes: number;
  /**
   * Appended bytes not yet handed to a batch: `queue`, then the slab from `slabStart`. An
   * entry's header lies whole in one buffer; the data of a kept record follows in its own.
   */
  private queue: Uint8Array[] = [];
  private slab: Buffer = Buffer.allocUnsafe(0);
  /** Every slab this segment took from the pool: a segment sealed in memory hands them on. */
  private readonly slabs: Buffer[] = [];
  private slabStart = 0;
  private slabUsed = 0;
  /** Syncs in progress: while any, sealing goes through the file (they wait for its records). */
  private syncing = 0;
  /** The batch being written: settles once its bytes are in the file. */
  private writing: Promise<void> | undefined;
  /** For callers that queued while a batch was being written: settled by the next batch. */
  private nextBatch: { promise: Promise<void>; resolve: () => void; reject: (err: unknown) => void } | undefined;
  /** A failed write is final: every later write (and close) reports it. */
  private writeFailure: unknown;
  /** Bytes of the batch being written. */
  private inFlightBytes = 0;
  /** The file's fd once the handle is open (-1 before). */
  private fd = -1;
  /** Set once the directory entry of this file is known durable. */
  private dirSynced: boolean;
  private destroyed = false;
  /** Set by `seal`: appends are refused from then on. */
  private sealedAs: string | undefined;
  /** The file, once something had to be written (see `file`). */
  private handle: Promise<FileHandle> | undefined;
  private createFailed = false;

  private constructor(
    readonly dir: string,
    readonly firstSeq: number,
    handle: Promise<FileHandle> | undefined,
    sizeBytes: number,
    dirSynced: boolean,
  ) {
    this.handle = handle;
    this.logicalBytes = sizeBytes;
    this.writtenBytes = sizeBytes;
    this.dirSynced = dirSynced;
  }

  get path(): string {
    return join(this.dir, openSegmentName(this.firstSeq));
  }

  /** Its file could not be made or written (a full file system, say): it can hold no more records. */
  get broken(): boolean {
    return this.createFailed || this.writeFailure !== undefined;
  }

  /** Seq of the last record, or firstSeq - 1 when empty. */
  get lastSeq(): number {
    const last = this.records[this.records.length - 1];
    return last ? last.seq : this.firstSeq - 1;
  }

  /** Bytes of records (queued or written), without the segment header. */
  get recordBytes(): number {
    return this.logicalBytes - segmentHeaderBytes;
  }

  /** Bytes appended but not yet in the file (held in memory). */
  get unwrittenBytes(): number {
    return this.logicalBytes - this.writtenBytes;
  }

  /**
   * Starts a new, empty segment. Its file is made by the first write: a segment shipped from
   * memory never has one (the seq floor is in the journal's floor file, not in this name).
   */
  static create(dir: string, firstSeq: number): OpenSegment {
    return new OpenSegment(dir, firstSeq, undefined, segmentHeaderBytes, false);
  }

  /** The file, made (with its header) on first use. */
  private file(): Promise<FileHandle> {
    // A segment closed or destroyed before its first write gets no file (none would close it).
    if (this.handle === undefined && this.destroyed) return Promise.reject(new FerryError('invalid-state', `journal: segment ${this.path} is closed`));
    if (this.handle === undefined) {
      const path = this.path;
      const header = encodeSegmentHeader({ kind: 'records', firstSeq: this.firstSeq, lastSeq: 0, entryCount: 0 });
      this.handle = (async () => {
        const h = await open(path, 'wx+', 0o600);
        try {
          await writeFully(h, header, 0);
        } catch (err) {
          await h.close();
          throw err;
        }
        return h;
      })();
      // Nobody may await the handle before it fails; the failure surfaces at the write.
      this.handle.catch(() => (this.createFailed = true));
    }
    return this.handle;
  }

  /**
   * Reopens a segment after a restart: keeps every complete record whose checksum holds and
   * whose seq follows the previous one, and truncates the file after the last of them (a torn
   * tail is a record the crash cut short, or whose bytes never all reached the disk).
   */
  static async recover(dir: string, firstSeq: number, logger: Logger): Promise<OpenSegment> {
    const path = join(dir, openSegmentName(firstSeq));
    const h = await open(path, 'r+');
    try {
      const size = (await h.stat()).size;
      const header = await readAt(h, 0, segmentHeaderBytes);
      let headerOk = false;
      try {
        const decoded = decodeSegmentHeader(header, path);
        headerOk = decoded.kind === 'records' && decoded.firstSeq === firstSeq;
      } catch {
        headerOk = false;
      }
      if (!headerOk) {
        // The crash came between creating the file and writing its header: nothing in it.
        logger.warn('journal: open segment has no valid header, starting it empty', { path, sizeBytes: size });
        await h.truncate(0);
        await writeFully(h, encodeSegmentHeader({ kind: 'records', firstSeq, lastSeq: 0, entryCount: 0 }), 0);
        await h.datasync();
        return new OpenSegment(dir, firstSeq, Promise.resolve(h), segmentHeaderBytes, true);
      }
      const segment = new OpenSegment(dir, firstSeq, Promise.resolve(h), segmentHeaderBytes, true);
      let pos = segmentHeaderBytes;
      let expectedSeq = firstSeq;
      for (;;) {
        const entry = await readRecord(h, pos, size, expectedSeq);
        if (entry === undefined) break;
        segment.records.push(entry.index);
        pos += entry.bytes;
        expectedSeq = entry.index.seq + 1;
      }
      if (pos < size) {
        logger.warn('journal: dropping torn tail of open segment', { path, keptBytes: pos, droppedBytes: size - pos, lastSeq: expectedSeq - 1 });
        await h.truncate(pos);
        await h.datasync();
      }
      segment.logicalBytes = pos;
      segment.writtenBytes = pos;
      return segment;
    } catch (err) {
      await h.close();
      throw err;
    }
  }

  /**
   * Appends a record. Its data is copied into memory (the caller keeps its buffer), unless
   * `immutable` says the caller will never change it: then large data is kept as it is.
   */
  append(seq: number, kind: RecordKind, offset: number, length: number, data?: WriteData, immutable = false): void {
    if (this.destroyed || this.sealedAs !== undefined) throw new FerryError('internal', `journal: append to retired segment ${this.path}`);
    const write = kind === 'write' && data !== undefined;
    const bytes = entryBytes(kind, length);
    // The crc is computed when the entry goes to a file (checksumEntries): crc protects bytes
    // at rest, and a segment shipped from memory never needs it.
    if (write && immutable && length >= keepMinBytes) {
      if (this.slabUsed + entryHeaderBytes > this.slab.length) this.nextSlab();
      encodeEntryInto(this.slab, this.slabUsed, seq, kind, offset, length); // the header alone
      this.slabUsed += entryHeaderBytes;
      this.cutSlab();
      if (data instanceof Uint8Array) this.queue.push(data);
      else this.queue.push(...data);
    } else if (bytes > slabBytes / 4) {
      this.cutSlab();
      const own = Buffer.allocUnsafe(bytes);
      encodeEntryInto(own, 0, seq, kind, offset, length, write ? data : undefined);
      this.queue.push(own);
    } else {
      if (this.slabUsed + bytes > this.slab.length) this.nextSlab();
      encodeEntryInto(this.slab, this.slabUsed, seq, kind, offset, length, write ? data : undefined);
      this.slabUsed += bytes;
    }
    this.logicalBytes += bytes;
    this.records.push({ seq, kind, offset, length });
  }

  private nextSlab(): void {
    this.cutSlab();
    // The old slab is not reused here: its bytes may still be in a batch being written.
    this.slab = journalSlabs.take();
    this.slabs.push(this.slab);
    this.slabStart = this.slabUsed = 0;
  }

  /** Moves the slab's unqueued bytes to the queue. */
  private cutSlab(): void {
    if (this.slabUsed > this.slabStart) this.queue.push(this.slab.subarray(this.slabStart, this.slabUsed));
    this.slabStart = this.slabUsed;
  }

  /** Resolves once everything appended before the call is in the file (not yet durable). */
  writeQueued(): Promise<void> {
    if (this.writeFailure !== undefined) return Promise.reject(this.writeFailure);
    // Nothing new: wait for the batch that holds the earlier records, if it is still going.
    if (this.writtenBytes + this.inFlightBytes === this.logicalBytes) return this.writing ?? resolved;
    if (this.writing === undefined) return this.startBatch();
    let next = this.nextBatch;
    if (next === undefined) {
      let resolve!: () => void;
      let reject!: (err: unknown) => void;
      const promise = new Promise<void>((res, rej) => {
        resolve = res;
        reject = rej;
      });
      next = this.nextBatch = { promise, resolve, reject };
    }
    return next.promise;
  }

  /** Writes everything appended now as one batch; at most one batch is in flight. */
  private startBatch(): Promise<void> {
    this.cutSlab();
    const buffers = this.queue;
    checksumEntries(buffers);
    const at = this.writtenBytes;
    const bytes = this.logicalBytes - at;
    this.queue = [];
    this.inFlightBytes = bytes;
    const written = this.fd >= 0 ? writeFully(this.fd, buffers, at) : this.file().then((h) => writeFully((this.fd = h.fd), buffers, at));
    const run = written.then(
      () => {
        this.writtenBytes = at + bytes;
        this.inFlightBytes = 0;
        this.batchDone();
      },
      (err: unknown) => {
        this.writeFailure = err;
        this.batchDone();
        throw err;
      },
    );
    this.writing = run;
    return run;
  }

  private batchDone(): void {
    this.writing = undefined;
    const next = this.nextBatch;
    if (next === undefined) return;
    this.nextBatch = undefined;
    if (this.writeFailure !== undefined) next.reject(this.writeFailure);
    else if (this.writtenBytes === this.logicalBytes) next.resolve();
    else this.startBatch().then(next.resolve, next.reject);
  }

  /** Resolves when no batch is being written; rejects if a write has failed. */
  private async writesSettled(): Promise<void> {
    while (this.writing !== undefined) await this.writing;
    if (this.writeFailure !== undefined) throw this.writeFailure;
  }

  /** Makes every record appended so far durable. */
  async sync(): Promise<void> {
    this.syncing++;
    try {
      await this.writeQueued();
      if (this.destroyed) return; // closed: synced before, or its records were discarded
      if (this.handle === undefined) return; // nothing was ever written: no file to make durable
      const h = await this.handle;
      await h.datasync();
      if (!this.dirSynced) {
        await fsyncDirectory(this.dir);
        this.dirSynced = true;
      }
    } catch (err) {
      if (!this.destroyed) throw err;
    } finally {
      this.syncing--;
    }
  }

  /**
   * Seals the segment (which must hold at least one record). If none of its records has been
   * written yet and no sync waits for them, the sealed segment keeps them in memory and the
   * open file, if one was made (a header alone), is deleted. Otherwise what is queued is
   * written and the file renamed to its sealed name; it stays open so that `sync` can make it
   * durable under its new name, until the journal closes it. A crash before the rename leaves
   * an open segment, which the next open recovers and seals again.
   */
  async seal(): Promise<SealedSegment> {
    const first = this.records[0];
    const last = this.records[this.records.length - 1];
    if (first === undefined || last === undefined) throw new FerryError('internal', `journal: sealing empty segment ${this.path}`);
    this.sealedAs = join(this.dir, sealedSegmentName(first.seq, last.seq));
    if (this.writtenBytes === segmentHeaderBytes && this.writing === undefined && this.syncing === 0 && this.writeFailure === undefined) {
      this.cutSlab();
      const image = [encodeSegmentHeader({ kind: 'records', firstSeq: this.firstSeq, lastSeq: 0, entryCount: 0 }), ...this.queue];
      this.queue = [];
      this.writtenBytes = this.logicalBytes; // the bytes are the sealed segment's now: nothing left to write here
      const sealed = SealedSegment.inMemory(this.sealedAs, first.seq, last.seq, image, this.slabs);
      await this.destroy();
      return sealed;
    }
    await this.writeQueued();
    // Every record is in the file now: the slabs go back to the pool. This segment may wait
    // here a long while (until it ships, or the journal syncs) and must not hold them.
    for (const slab of this.slabs.splice(0)) journalSlabs.give(slab);
    this.slab = Buffer.allocUnsafe(0);
    this.slabStart = this.slabUsed = 0;
    await rename(this.path, this.sealedAs);
    this.dirSynced = false;
    return new SealedSegment(this.sealedAs, first.seq, last.seq, this.writtenBytes);
  }

  async close(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    try {
      await this.writesSettled();
    } finally {
      await (await this.handle?.catch(() => undefined))?.close();
    }
  }

  /** Closes and deletes the file: its records are sealed elsewhere or discarded. */
  async destroy(): Promise<void> {
    this.destroyed = true;
    await this.writesSettled().catch(() => {});
    if (this.handle === undefined) return; // it never had a file
    await (await this.handle.catch(() => undefined))?.close();
    await unlink(this.path).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
    });
  }
}

/** One complete, checksummed record at `pos`, or undefined if the bytes there are not one. */
async function readRecord(
  h: FileHandle,
  pos: number,
  size: number,
  expectedSeq: number,
): Promise<{ index: RecordIndexEntry; bytes: number } | undefined> {
  if (pos + entryHeaderBytes > size) return undefined;
  const headerBuf = await readAt(h, pos, entryHeaderBytes);
  const header = decodeEntryHeader(headerBuf);
  if (header === undefined || header.seq !== expectedSeq) return undefined;
  const dataBytes = header.kind === 'write' ? header.length : 0;
  if (pos + entryHeaderBytes + dataBytes > size) return undefined;
  let crc = headerCrcStart(headerBuf);
  for (let done = 0; done < dataBytes; done += verifyChunkBytes) {
    const chunk = await readAt(h, pos + entryHeaderBytes + done, Math.min(verifyChunkBytes, dataBytes - done));
    crc = crc32(chunk, crc);
  }
  if (crc >>> 0 !== header.crc) return undefined;
  return {
    index: { seq: header.seq, kind: header.kind, offset: header.offset, length: header.length },
    bytes: entryHeaderBytes + dataBytes,
  };
}
