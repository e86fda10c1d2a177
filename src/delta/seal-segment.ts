/**
 * Sealing: turns an open segment's raw records into a sealed segment file. Within a segment
 * the last write wins, so the sealed file holds only the final bytes of each range, as
 * non-overlapping extents (trim replays as zero). The file is written under a temporary name,
 * synced, renamed, and its directory synced: a sealed file either exists whole or not at all.
 */
import { open, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { FerryError } from '../core/index.js';
import { ExtentMap } from './extent-map.js';
import type { OpenSegment } from './open-segment.js';
import { encodeEntryHeader, encodeSegmentHeader, entryHeaderPrefix, sealedSegmentName, setEntryCrc } from './segment-codec.js';
import { fsyncDirectory, writeAllAt } from './segment-file.js';
import { SealedSegment } from './sealed-segment.js';

/** Output is gathered into writes of about this size. */
const writeBatchBytes = 1024 * 1024;
/** Extents up to this size are read once; larger ones are read twice (crc, then copy). */
const copyChunkBytes = 4 * 1024 * 1024;

/** Seals `source` (which must have at least one record and all of it written) into `dir`. */
export async function sealSegment(source: OpenSegment, dir: string): Promise<SealedSegment> {
  const first = source.records[0];
  const last = source.records[source.records.length - 1];
  if (first === undefined || last === undefined) throw new FerryError('internal', `journal: sealing empty segment ${source.path}`);

  const map = new ExtentMap();
  for (const r of source.records) {
    map.put({ offset: r.offset, length: r.length, kind: r.kind === 'write' ? 'write' : 'zero', seq: r.seq, source: r.kind === 'write' ? r.dataPos : -1 });
  }
  const pieces = map.pieces();

  const finalPath = join(dir, sealedSegmentName(first.seq, last.seq));
  const tmpPath = `${finalPath}.tmp`;
  const out = await open(tmpPath, 'w');
  let position = 0;
  try {
    let batch: Buffer[] = [encodeSegmentHeader({ kind: 'sealed', firstSeq: first.seq, lastSeq: last.seq, entryCount: pieces.length })];
    let batchBytes = batch[0]!.length;
    const emit = async (bufs: Buffer[]): Promise<void> => {
      for (const b of bufs) {
        batch.push(b);
        batchBytes += b.length;
      }
      if (batchBytes >= writeBatchBytes) {
        await writeAllAt(out, batch, position);
        position += batchBytes;
        batch = [];
        batchBytes = 0;
      }
    };
    for (const piece of pieces) {
      if (piece.kind === 'zero') {
        await emit([encodeEntryHeader(piece.seq, 'zero', piece.offset, piece.length)]);
      } else if (piece.length <= copyChunkBytes) {
        const data = await source.readData(piece.source, piece.length);
        await emit([encodeEntryHeader(piece.seq, 'write', piece.offset, piece.length, data), data]);
      } else {
        const { header, crc: start } = entryHeaderPrefix(piece.seq, 'write', piece.offset, piece.length);
        let crc = start;
        for (let done = 0; done < piece.length; done += copyChunkBytes) {
          crc = crc32(await source.readData(piece.source + done, Math.min(copyChunkBytes, piece.length - done)), crc);
        }
        setEntryCrc(header, crc);
        await emit([header]);
        for (let done = 0; done < piece.length; done += copyChunkBytes) {
          await emit([await source.readData(piece.source + done, Math.min(copyChunkBytes, piece.length - done))]);
        }
      }
    }
    await writeAllAt(out, batch, position);
    position += batchBytes;
    await out.datasync();
  } catch (err) {
    await out.close();
    await unlink(tmpPath).catch(() => {});
    throw err;
  }
  await out.close();
  await rename(tmpPath, finalPath);
  await fsyncDirectory(dir);
  return new SealedSegment(finalPath, first.seq, last.seq, position, pieces.length);
}
