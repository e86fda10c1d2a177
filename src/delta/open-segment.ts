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
import { fsyncDirectory, readAt, writeAllAt } from './segment-file.js';

export interface RecordIndexEntry {
  seq: number;
  kind: RecordKind;
  offset: number;
  length: number;
  /** Position of the record's data in the file (writes only). */
  dataPos: number;
}

const verifyChunkBytes = 1024 * 1024;

export class OpenSegment {
  readonly records: RecordIndexEntry[] = [];
  /** File size once everything queued is written. */
  private logicalBytes: number;
  private writtenBytes: number;
  private queue: Buffer[] = [];
  private writeChain: Promise<void> = Promise.resolve();
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

  /** Queues a record; `data` is copied, so the caller may reuse its buffer at once. */
  append(seq: number, kind: RecordKind, offset: number, length: number, data?: Uint8Array): void {
    if (this.destroyed) throw new FerryError('internal', `journal: append to retired segment ${this.path}`);
    const header = encodeEntryHeader(seq, kind, offset, length, data);
    this.queue.push(header);
    const dataPos = this.logicalBytes + entryHeaderBytes;
    if (kind === 'write' && data !== undefined) this.queue.push(Buffer.from(data));
    this.logicalBytes = dataPos + (kind === 'write' ? length : 0);
    this.records.push({ seq, kind, offset, length, dataPos });
  }

  /** Resolves once everything queued before the call is in the file (not yet durable). */
  writeQueued(): Promise<void> {
    this.writeChain = this.writeChain.then(async () => {
      if (this.queue.length === 0) return;
      const buffers = this.queue;
      this.queue = [];
      const h = await this.handle;
      const at = this.writtenBytes;
      const bytes = buffers.reduce((sum, b) => sum + b.length, 0);
      await writeAllAt(h, buffers, at);
      this.writtenBytes = at + bytes;
    });
    return this.writeChain;
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

  /** Reads `length` data bytes at file position `pos` (used by sealing). */
  async readData(pos: number, length: number): Promise<Buffer> {
    const out = await readAt(await this.handle, pos, length);
    if (out.length !== length) throw new FerryError('io', `journal segment ${this.path}: short read at ${pos}`);
    return out;
  }

  async close(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    try {
      await this.writeChain;
    } finally {
      await (await this.handle.catch(() => undefined))?.close();
    }
  }

  /** Closes and deletes the file: its records are sealed elsewhere or discarded. */
  async destroy(): Promise<void> {
    this.destroyed = true;
    await this.writeChain.catch(() => {});
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
