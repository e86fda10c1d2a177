/**
 * The open journal segment: the file raw records are appended to, in seq order, as the VM
 * writes. Appends are synchronous and land in a small in-memory queue; `writeQueued` hands
 * everything queued to the kernel in one positioned writev (group commit: concurrent writers
 * share one syscall), and `sync` adds fdatasync. The capture filter waits for `writeQueued`
 * before acknowledging a write, so the queue holds at most the writes in flight and a crash of
 * the process alone loses no acknowledged record.
 *
 * An index of the records (not their data) stays in memory: sealing coalesces from it, and a
 * fall back to the bitmap marks its ranges dirty.
 */
import { open, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { FerryError, Logger } from '../core/index.js';
import {
  decodeEntryHeader,
  decodeSegmentHeader,
  encodeEntryHeader,
  encodeSegmentHeader,
  entryHeaderBytes,
  headerCrcStart,
  openSegmentName,
  segmentHeaderBytes,
  type RecordKind,
} from './segment-codec.js';
import { fsyncDirectory, readAt, writeAllAt, writevAllAt } from './segment-file.js';

export interface RecordIndexEntry {
  seq: number;
  kind: RecordKind;
  offset: number;
  length: number;
  /** Position of the record's data in the file (writes only). */
  dataPos: number;
}

const verifyChunkBytes = 1024 * 1024;
const resolved: Promise<void> = Promise.resolve();
/** Segments up to this size are read whole for sealing (the default segment is 8 MiB). */
const sealReadAllBytes = 64 * 1024 * 1024;

export class OpenSegment {
  readonly records: RecordIndexEntry[] = [];
  /** File size once everything queued is written. */
  private logicalBytes: number;
  private writtenBytes: number;
  private queue: Buffer[] = [];
  private queueBytes = 0;
  /** The batch being written: settles once its bytes are in the file. */
  private writing: Promise<void> | undefined;
  /** For callers that queued while a batch was being written: settled by the next batch. */
  private nextBatch: { promise: Promise<void>; resolve: () => void; reject: (err: unknown) => void } | undefined;
  /** A failed write is final: every later write (and close) reports it. */
  private writeFailure: unknown;
  /** The file's fd once the handle is open (-1 before). */
  private fd = -1;
  /** The whole file, read once for sealing (see readData). */
  private sealCache: Buffer | undefined;
  /** Set once the directory entry of this file is known durable. */
  private dirSynced: boolean;
  private destroyed = false;
  private readonly handle: Promise<FileHandle>;

  private constructor(
    readonly dir: string,
    readonly firstSeq: number,
    handle: Promise<FileHandle>,
    sizeBytes: number,
    dirSynced: boolean,
  ) {
    this.handle = handle;
    // Nobody may await the handle before it fails; the failure surfaces at the next write.
    handle.catch(() => {});
    this.logicalBytes = sizeBytes;
    this.writtenBytes = sizeBytes;
    this.dirSynced = dirSynced;
  }

  get path(): string {
    return join(this.dir, openSegmentName(this.firstSeq));
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

  /**
   * Starts a new, empty segment file. Returns at once (appends must never wait for a file to
   * be created); the file is created in the background and the first write waits for it.
   */
  static create(dir: string, firstSeq: number): OpenSegment {
    const path = join(dir, openSegmentName(firstSeq));
    const handle = (async () => {
      const h = await open(path, 'wx+');
      try {
        await writeAllAt(h, [encodeSegmentHeader({ kind: 'open', firstSeq, lastSeq: 0, entryCount: 0 })], 0);
      } catch (err) {
        await h.close();
        throw err;
      }
      return h;
    })();
    return new OpenSegment(dir, firstSeq, handle, segmentHeaderBytes, false);
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
        headerOk = decoded.kind === 'open' && decoded.firstSeq === firstSeq;
      } catch {
        headerOk = false;
      }
      if (!headerOk) {
        // The crash came between creating the file and writing its header: nothing in it.
        logger.warn('journal: open segment has no valid header, starting it empty', { path, sizeBytes: size });
        await h.truncate(0);
        await writeAllAt(h, [encodeSegmentHeader({ kind: 'open', firstSeq, lastSeq: 0, entryCount: 0 })], 0);
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
   * Queues a record. `data` is referenced, not copied: the caller must not change it until a
   * `writeQueued()` (or `sync()`) called after this append has resolved. The change tracker
   * waits for that before it returns, and the capture filter before it acknowledges.
   */
  append(seq: number, kind: RecordKind, offset: number, length: number, data?: Uint8Array): void {
    if (this.destroyed) throw new FerryError('internal', `journal: append to retired segment ${this.path}`);
    const write = kind === 'write' && data !== undefined;
    const header = encodeEntryHeader(seq, kind, offset, length, write ? data : undefined);
    this.queue.push(header);
    const dataPos = this.logicalBytes + entryHeaderBytes;
    if (write) this.queue.push(Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength));
    const recordBytes = entryHeaderBytes + (kind === 'write' ? length : 0);
    this.queueBytes += recordBytes;
    this.logicalBytes += recordBytes;
    this.records.push({ seq, kind, offset, length, dataPos });
  }

  /** Resolves once everything queued before the call is in the file (not yet durable). */
  writeQueued(): Promise<void> {
    if (this.writeFailure !== undefined) return Promise.reject(this.writeFailure);
    // Nothing new: wait for the batch that holds the earlier records, if it is still going.
    if (this.queue.length === 0) return this.writing ?? resolved;
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

  /** Writes everything queued now as one batch; at most one batch is in flight. */
  private startBatch(): Promise<void> {
    const buffers = this.queue;
    const bytes = this.queueBytes;
    this.queue = [];
    this.queueBytes = 0;
    const at = this.writtenBytes;
    const written = this.fd >= 0 ? writevAllAt(this.fd, buffers, at) : this.handle.then((h) => writevAllAt((this.fd = h.fd), buffers, at));
    const run = written.then(
      () => {
        this.writtenBytes = at + bytes;
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
    else if (this.queue.length === 0) next.resolve();
    else this.startBatch().then(next.resolve, next.reject);
  }

  /** Resolves when no batch is being written; rejects if a write has failed. */
  private async writesSettled(): Promise<void> {
    while (this.writing !== undefined) await this.writing;
    if (this.writeFailure !== undefined) throw this.writeFailure;
  }

  /** Makes every record appended so far durable. */
  async sync(): Promise<void> {
    await this.writeQueued();
    if (this.destroyed) return; // sealed meanwhile: the sealed file is durable
    const h = await this.handle;
    try {
      await h.datasync();
      if (!this.dirSynced) {
        await fsyncDirectory(this.dir);
        this.dirSynced = true;
      }
    } catch (err) {
      if (!this.destroyed) throw err;
    }
  }

  /**
   * Reads `length` data bytes at file position `pos` (used by sealing). Sealing reads every
   * record's data in disk-offset order, which is random in the file: one read per record
   * would cost a threadpool round trip per 4 KiB. So a segment of at most `sealReadAllBytes`
   * is read whole, once, on the first call, and served from memory (the segment is no longer
   * appended to when it is sealed); larger ones are read piece by piece. The result may be a
   * view into that copy: callers must not change it.
   */
  async readData(pos: number, length: number): Promise<Buffer> {
    if (this.sealCache === undefined && this.queue.length === 0 && this.writing === undefined && this.writtenBytes <= sealReadAllBytes) {
      const whole = await readAt(await this.handle, 0, this.writtenBytes);
      if (whole.length === this.writtenBytes) this.sealCache = whole;
    }
    const cache = this.sealCache;
    if (cache !== undefined && pos + length <= cache.length) return cache.subarray(pos, pos + length);
    const out = await readAt(await this.handle, pos, length);
    if (out.length !== length) throw new FerryError('io', `journal segment ${this.path}: short read at ${pos}`);
    return out;
  }

  async close(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    this.sealCache = undefined;
    try {
      await this.writesSettled();
    } finally {
      await (await this.handle.catch(() => undefined))?.close();
    }
  }

  /** Closes and deletes the file: its records are sealed elsewhere or discarded. */
  async destroy(): Promise<void> {
    this.destroyed = true;
    this.sealCache = undefined;
    await this.writesSettled().catch(() => {});
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
    index: { seq: header.seq, kind: header.kind, offset: header.offset, length: header.length, dataPos: pos + entryHeaderBytes },
    bytes: entryHeaderBytes + dataBytes,
  };
}
