/**
 * The journal's seq floor on disk (docs/FORMAT.md, "Journal seq floor"): no seq below it is
 * given out again, even after a power loss. It is raised once per shipped segment, so raising
 * it must be cheap: the file holds two slots, written in turn, each with a generation and a
 * crc. A raise is one positioned write and one fdatasync (no new file, no rename, no
 * directory sync); a write torn by a power loss spoils only its own slot, and the other still
 * holds the floor before it.
 *
 * It replaces `journal-state.json` ({"version":1,"nextSeq":N}, written whole and renamed on
 * every raise): a floor found there is carried into the new file, which is made durable
 * before the old one is deleted.
 */
import { open, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { FerryError, asFerryError, fsyncDirectory, isAllZero, readJsonFile, writeFully } from '../core/index.js';

export const seqFloorFileName = 'journal-floor';
const legacyFileName = 'journal-state.json';
const magic = 0x464a_464c; // "FJFL"
const formatVersion = 1;
const slotBytes = 512;
/** magic u32, version u16, reserved u16, generation u64, nextSeq u64, reserved u32, crc32 u32. */
const slotUsedBytes = 32;

export class SeqFloor {
  private constructor(
    private readonly handle: FileHandle,
    private generation: number,
    private floorValue: number,
  ) {}

  /** The lowest seq that may be given out. */
  get floor(): number {
    return this.floorValue;
  }

  /** Opens the floor of the journal in `dir`, making the file (floor 1, or the old file's) if there is none. */
  static async open(dir: string): Promise<SeqFloor> {
    const path = join(dir, seqFloorFileName);
    let handle: FileHandle;
    try {
      handle = await open(path, 'r+');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw asFerryError(err, 'io');
      handle = await open(path, 'wx+', 0o600);
    }
    try {
      const bytes = Buffer.alloc(2 * slotBytes);
      await handle.read(bytes, 0, bytes.length, 0);
      const slots = [decodeSlot(bytes.subarray(0, slotBytes)), decodeSlot(bytes.subarray(slotBytes))];
      const newest = slots.reduce<SlotContents | undefined>((best, s) => (s !== undefined && (best === undefined || s.generation > best.generation) ? s : best), undefined);
      if (newest !== undefined) return new SeqFloor(handle, newest.generation, newest.nextSeq);
      // The first write goes to the second slot: with the first slot still zeros (or no bytes
      // at all), the file was made by an open that did not finish (no seq was given out under
      // it), and the old file, deleted only after, still holds the floor if there was one.
      if (!isAllZero(bytes.subarray(0, slotBytes))) throw new FerryError('checksum-mismatch', `journal floor ${path} is damaged: neither of its slots is valid`);
      await writeFully(handle, Buffer.alloc(2 * slotBytes), 0);
      const floor = new SeqFloor(handle, 0, (await readLegacy(dir)) ?? 1);
      await floor.write(floor.floorValue);
      await fsyncDirectory(dir);
      await unlink(join(dir, legacyFileName)).catch(() => {}); // its floor is in the new file now
      return floor;
    } catch (err) {
      await handle.close();
      throw err;
    }
  }

  /** Makes `floor` the durable floor (callers only ever raise it). */
  async write(floor: number): Promise<void> {
    const generation = this.generation + 1;
    const slot = Buffer.alloc(slotBytes);
    slot.writeUInt32BE(magic, 0);
    slot.writeUInt16BE(formatVersion, 4);
    slot.writeBigUInt64BE(BigInt(generation), 8);
    slot.writeBigUInt64BE(BigInt(floor), 16);
    slot.writeUInt32BE(crc32(slot.subarray(0, slotUsedBytes - 4)), slotUsedBytes - 4);
    await writeFully(this.handle, slot, (generation % 2) * slotBytes);
    await this.handle.datasync();
    this.generation = generation;
    this.floorValue = floor;
  }

  async close(): Promise<void> {
    await this.handle.close();
  }
}

interface SlotContents {
  generation: number;
  nextSeq: number;
}

/** A slot's contents, or undefined if it is empty, torn or damaged. */
function decodeSlot(slot: Buffer): SlotContents | undefined {
  if (slot.length < slotUsedBytes || slot.readUInt32BE(0) !== magic || slot.readUInt16BE(4) !== formatVersion) return undefined;
  if (crc32(slot.subarray(0, slotUsedBytes - 4)) !== slot.readUInt32BE(slotUsedBytes - 4)) return undefined;
  const generation = Number(slot.readBigUInt64BE(8));
  const nextSeq = Number(slot.readBigUInt64BE(16));
  if (!Number.isSafeInteger(generation) || !Number.isSafeInteger(nextSeq) || nextSeq < 1) return undefined;
  return { generation, nextSeq };
}

/** The floor in the old `journal-state.json`, if there is one. */
async function readLegacy(dir: string): Promise<number | undefined> {
  const path = join(dir, legacyFileName);
  const state = await readJsonFile(path, 'journal state');
  if (state === undefined) return undefined;
  const { version, nextSeq } = state as { version?: unknown; nextSeq?: unknown };
  if (version !== 1) throw new FerryError('unsupported-version', `journal state ${path}: version ${String(version)}, this build reads 1`);
  if (typeof nextSeq !== 'number' || !Number.isSafeInteger(nextSeq) || nextSeq < 1) {
    throw new FerryError('checksum-mismatch', `journal state ${path}: bad nextSeq ${String(nextSeq)}`);
  }
  return nextSeq;
}
