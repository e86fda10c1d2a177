/**
 * The activity log of one disk (DRBD's activity log: a write-intent log). It holds the
 * extents of the disk (4 MiB by default) that may hold writes the store does not have yet.
 * An extent joins the log, durably, before a write to it reaches the disk, and may leave
 * only once no write to it is in flight and every record of it is in the store (the change
 * tracker says when: `evict`). As in DRBD, extents that may leave stay while the log holds
 * at most `hotExtents`, the least recently written leaving first: a workload that keeps
 * writing the same places pays no commit per write. After an unclean stop, the journal's
 * unsynced records and the writes that were in flight are lost, but each lies in an extent
 * of the log: only those extents need a resync, not the whole disk.
 *
 * The file holds two slots, each a whole bitmap of extents with a generation and a crc. A
 * commit writes the older slot and syncs it, so a torn commit leaves the newer one valid
 * (docs/FORMAT.md, "Activity log"). Commits are grouped: extents added while one is being
 * written go in the next. The file is written in full when created, so a commit never
 * allocates: a full file system cannot stop it.
 *
 * If a commit fails, the log deletes its file and stops logging (an unclean stop then costs
 * a full resync, as if there were no log); only if the file cannot be deleted either do
 * writes fail.
 */
import { open, readFile, unlink, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { crc32 } from 'node:zlib';
import { FerryError, Logger, asFerryError, badInput, fsyncDirectory, sectorBytes, writeFully } from '../core/index.js';
import type { Extent } from './dirty-bitmap.js';

export const defaultActivityExtentBytes = 4 * 1024 * 1024;
/** Extents that may stay in the log though they could leave: 4 GiB of 4 MiB extents. */
export const defaultHotExtents = 1024;

const magic = 0x4641_4c31; // "FAL1"
const formatVersion = 1;
/** magic u32, version u16, reserved u16, extentBytes u32, crc32 u32, generation u64, sizeBytes u64. */
const headerBytes = 32;
const slotAlignBytes = 4096;

const out = 0;
/** In the log in memory, waiting for the commit that makes it durable. */
const adding = 1;
const durable = 2;

export interface ActivityLogOptions {
  sizeBytes: number;
  extentBytes?: number;
  /** See the class comment. Default 1024; 0 lets every extent leave as soon as it may. */
  hotExtents?: number;
  /**
   * No earlier state exists (a new tracker): start empty. Otherwise a missing or damaged
   * file means nothing is known, and every extent starts in the log.
   */
  fresh: boolean;
  /** The seq recovered extents are treated as last written at. */
  recoveredSeq: number;
  logger?: Logger;
}

export class ActivityLog {
  readonly extentBytes: number;
  readonly extentCount: number;
  /** Whether the file was found valid on opening (for a fresh log: true). */
  readonly recovered: boolean;
  private readonly members = new Set<number>();
  private readonly state: Uint8Array;
  private readonly inFlight: Uint32Array;
  private readonly lastSeq: Float64Array;
  /** When each extent was last written to, by a counter of `begin` calls. */
  private readonly lastUsed: Float64Array;
  private uses = 0;
  private readonly hotExtents: number;
  private generation: number;
  private committing: Promise<void> | undefined;
  private queued: Promise<void> | undefined;
  private disabled = false;
  /** The log could neither be written nor deleted: writes must not go on. */
  private fatal: FerryError | undefined;
  private closed = false;

  private constructor(
    readonly path: string,
    private readonly handle: FileHandle,
    readonly sizeBytes: number,
    extentBytes: number,
    generation: number,
    recovered: boolean,
    hotExtents: number,
    private readonly logger: Logger,
  ) {
    this.extentBytes = extentBytes;
    this.extentCount = Math.ceil(sizeBytes / extentBytes);
    this.state = new Uint8Array(this.extentCount);
    this.inFlight = new Uint32Array(this.extentCount);
    this.lastSeq = new Float64Array(this.extentCount);
    this.lastUsed = new Float64Array(this.extentCount);
    this.hotExtents = hotExtents;
    this.generation = generation;
    this.recovered = recovered;
  }

  /** Opens the log at `path`, creating it if needed; the extents found there start in it. */
  static async open(path: string, options: ActivityLogOptions): Promise<ActivityLog> {
    const extentBytes = options.extentBytes ?? defaultActivityExtentBytes;
    if (!Number.isSafeInteger(extentBytes) || extentBytes <= 0 || extentBytes % sectorBytes !== 0) {
      throw badInput('activityExtentBytes', extentBytes, `a positive multiple of ${sectorBytes} bytes`);
    }
    const hotExtents = options.hotExtents ?? defaultHotExtents;
    if (!Number.isSafeInteger(hotExtents) || hotExtents < 0) throw badInput('hotExtents', hotExtents, 'a whole number of extents, 0 or more');
    const logger = options.logger ?? Logger.silent();
    const found = await readActivityLog(path, options.sizeBytes, extentBytes, logger);
    const handle = await open(path, found === undefined ? 'w+' : 'r+', 0o600);
    const log = new ActivityLog(path, handle, options.sizeBytes, extentBytes, found?.generation ?? 0, options.fresh || found !== undefined, hotExtents, logger);
    try {
      if (found === undefined) {
        // Written whole and synced once, so that commits only overwrite.
        await writeFully(handle, Buffer.alloc(2 * log.slotBytes), 0);
        await handle.sync();
        await fsyncDirectory(dirname(path));
      }
      const recovered = found?.extents ?? (options.fresh ? [] : Array.from({ length: log.extentCount }, (_, i) => i));
      for (const extent of recovered) {
        log.members.add(extent);
        log.state[extent] = durable;
        log.lastSeq[extent] = options.recoveredSeq;
      }
      if (found === undefined) await log.commit();
    } catch (err) {
      await handle.close().catch(() => {});
      throw asFerryError(err, 'io');
    }
    return log;
  }

  private get slotBytes(): number {
    return slotBytes(this.extentCount);
  }

  /** The disk ranges of the extents in the log, in offset order. */
  extents(): Extent[] {
    return [...this.members].sort((a, b) => a - b).map((i) => this.extentRange(i));
  }

  /** Bytes of the disk the log covers. */
  get bytes(): number {
    let bytes = 0;
    for (const i of this.members) bytes += this.extentRange(i).length;
    return bytes;
  }

  /**
   * A write to `length` bytes at `offset` is about to reach the disk: its extents join the
   * log. Undefined if they are in the durable log already (the usual case, no promise);
   * otherwise a promise that resolves once they are. Every call is paired with `end`.
   */
  begin(offset: number, length: number): Promise<void> | undefined {
    if (length === 0 || this.closed) return undefined;
    let wait = false;
    const now = ++this.uses;
    for (let i = Math.floor(offset / this.extentBytes), last = Math.floor((offset + length - 1) / this.extentBytes); i <= last; i++) {
      this.inFlight[i]!++;
      this.lastUsed[i] = now;
      if (this.state[i] === out) {
        this.state[i] = adding;
        this.members.add(i);
      }
      if (this.state[i] === adding) wait = true;
    }
    if (this.fatal) return Promise.reject(this.fatal);
    return wait && !this.disabled ? this.commit() : undefined;
  }

  /** The write that `begin` announced got `seq` in the journal. */
  recorded(offset: number, length: number, seq: number): void {
    if (length === 0) return;
    for (let i = Math.floor(offset / this.extentBytes), last = Math.floor((offset + length - 1) / this.extentBytes); i <= last; i++) {
      if (seq > this.lastSeq[i]!) this.lastSeq[i] = seq;
    }
  }

  /** The write that `begin` announced is done (recorded, or failed). */
  end(offset: number, length: number): void {
    if (length === 0 || this.closed) return;
    for (let i = Math.floor(offset / this.extentBytes), last = Math.floor((offset + length - 1) / this.extentBytes); i <= last; i++) this.inFlight[i]!--;
  }

  /**
   * Every record below `releasedBelow` is in the store (and the tracker's state says so,
   * durably): extents with nothing in flight and no later record may leave the log, the
   * least recently written first, until it holds `hotExtents`. The file is rewritten in the
   * background; until then it says more than it must, which is safe.
   */
  evict(releasedBelow: number): void {
    if (this.closed || this.members.size <= this.hotExtents) return;
    const free: number[] = [];
    for (const i of this.members) {
      if (this.state[i] === durable && this.inFlight[i] === 0 && this.lastSeq[i]! < releasedBelow) free.push(i);
    }
    const leaving = Math.min(free.length, this.members.size - this.hotExtents);
    if (leaving === 0) return;
    free.sort((a, b) => this.lastUsed[a]! - this.lastUsed[b]!);
    for (const i of free.slice(0, leaving)) {
      this.members.delete(i);
      this.state[i] = out;
    }
    if (!this.disabled) this.commit().catch(() => {}); // a failure is logged; begin() reports it
  }

  /** Writes the log as it stands and closes the file. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      if (!this.disabled) await this.commit();
    } finally {
      await this.handle.close().catch(() => {});
    }
  }

  private extentRange(i: number): Extent {
    const offset = i * this.extentBytes;
    return { offset, length: Math.min(this.extentBytes, this.sizeBytes - offset) };
  }

  /** Resolves once a commit that started after this call is durable. */
  private commit(): Promise<void> {
    if (this.committing === undefined) {
      const run = this.writeSlot();
      this.committing = run.finally(() => (this.committing = undefined));
      return this.committing;
    }
    this.queued ??= this.committing
      .catch(() => {})
      .then(() => {
        this.queued = undefined;
        if (this.fatal) throw this.fatal;
        return this.disabled ? undefined : this.commit();
      });
    return this.queued;
  }

  private async writeSlot(): Promise<void> {
    const generation = this.generation + 1;
    const included = [...this.members];
    const slot = Buffer.alloc(this.slotBytes);
    for (const i of included) slot[headerBytes + (i >>> 3)]! |= 1 << (i & 7);
    slot.writeUInt32BE(magic, 0);
    slot.writeUInt16BE(formatVersion, 4);
    slot.writeUInt32BE(this.extentBytes, 8);
    slot.writeBigUInt64BE(BigInt(generation), 16);
    slot.writeBigUInt64BE(BigInt(this.sizeBytes), 24);
    slot.writeUInt32BE(crc32(slot.subarray(16, headerBytes + Math.ceil(this.extentCount / 8))), 12);
    try {
      await writeFully(this.handle, slot, (generation % 2) * this.slotBytes);
      await this.handle.datasync();
    } catch (err) {
      await this.disable(asFerryError(err, 'io'));
      return;
    }
    this.generation = generation;
    for (const i of included) if (this.state[i] === adding) this.state[i] = durable;
  }

  /** A commit failed: without a file, the next open trusts nothing (a full resync). */
  private async disable(error: FerryError): Promise<void> {
    this.disabled = true;
    this.logger.error('activity log: a commit failed; the log is deleted and stops, so an unclean stop now costs a full resync', { path: this.path, error: error.message });
    try {
      await unlink(this.path);
      await fsyncDirectory(dirname(this.path));
    } catch (err) {
      // The file may still say less than is in flight: writes must not go on.
      throw (this.fatal = new FerryError('io', `activity log ${this.path}: a commit failed (${error.message}) and the log could not be deleted: ${asFerryError(err).message}`));
    }
    for (const i of this.members) if (this.state[i] === adding) this.state[i] = durable;
  }
}

/** Bytes of one slot: the header and one bit per extent, rounded up to 4 KiB. */
function slotBytes(extentCount: number): number {
  return Math.ceil((headerBytes + Math.ceil(extentCount / 8)) / slotAlignBytes) * slotAlignBytes;
}

/**
 * The newest valid slot of the log at `path`: its generation and the indices of the extents
 * in it. Undefined if there is no file, no valid slot, or it is for another disk geometry.
 */
export async function readActivityLog(
  path: string,
  sizeBytes: number,
  extentBytes = defaultActivityExtentBytes,
  logger = Logger.silent(),
): Promise<{ generation: number; extents: number[] } | undefined> {
  let file: Buffer;
  try {
    file = await readFile(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw asFerryError(err, 'io');
  }
  const extentCount = Math.ceil(sizeBytes / extentBytes);
  const bitsBytes = Math.ceil(extentCount / 8);
  const slot = slotBytes(extentCount);
  let best: { generation: number; extents: number[] } | undefined;
  for (let s = 0; s < 2; s++) {
    const bytes = file.subarray(s * slot, (s + 1) * slot);
    if (bytes.length < headerBytes + bitsBytes || bytes.readUInt32BE(0) !== magic) continue;
    if (bytes.readUInt16BE(4) !== formatVersion || bytes.readUInt32BE(8) !== extentBytes || bytes.readBigUInt64BE(24) !== BigInt(sizeBytes)) continue;
    if (crc32(bytes.subarray(16, headerBytes + bitsBytes)) !== bytes.readUInt32BE(12)) continue;
    const generation = Number(bytes.readBigUInt64BE(16));
    if (best !== undefined && best.generation >= generation) continue;
    const extents: number[] = [];
    for (let i = 0; i < extentCount; i++) if ((bytes[headerBytes + (i >>> 3)]! & (1 << (i & 7))) !== 0) extents.push(i);
    best = { generation, extents };
  }
  if (best === undefined) logger.warn('activity log: no valid slot (damaged, or for another disk geometry); nothing it held is known', { path });
  return best;
}
