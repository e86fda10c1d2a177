import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { copyFile, mkdtemp, open, readFile, readdir, rm, stat, truncate, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { isFerryError, writeDataBytes, type WriteData } from '../../src/core/index.js';
import { Journal, type JournalRecord, type SealedSegment } from '../../src/delta/journal.js';
import { decodeEntryHeader, entryHeaderBytes, segmentHeaderBytes } from '../../src/delta/segment-codec.js';
import { joined } from '../support/bytes.js';
import { createPrng, fillRandom } from '../support/random-workload.js';

const K = 1024;
let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ferry-journal-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

function sha(buf: Uint8Array): string {
  return createHash('sha256').update(buf).digest('hex');
}

function applyRecord(disk: Buffer, r: JournalRecord): void {
  if (r.kind === 'write') disk.set(r.data instanceof Uint8Array ? r.data : Buffer.concat(r.data), r.offset);
  else disk.fill(0, r.offset, r.offset + r.length);
}

async function applySegments(disk: Buffer, segments: SealedSegment[]): Promise<void> {
  for (const segment of segments) {
    let end = -1;
    for await (const extent of segment.readExtents()) {
      expect(extent.offset).toBeGreaterThanOrEqual(end); // sorted, non-overlapping
      end = extent.offset + extent.length;
      if (extent.kind === 'write') {
        const data = joined(extent.data!);
        expect(data.length).toBe(extent.length);
        disk.set(data, extent.offset);
      } else {
        disk.fill(0, extent.offset, extent.offset + extent.length);
      }
    }
  }
}

function randomRecords(seed: number, count: number, diskBytes: number): JournalRecord[] {
  const random = createPrng(seed);
  const records: JournalRecord[] = [];
  for (let i = 0; i < count; i++) {
    const sectors = 1 + Math.floor(Math.pow(random(), 3) * 128); // mostly small, up to 64 KiB
    const length = Math.min(sectors * 512, diskBytes);
    const offset = Math.floor(random() * ((diskBytes - length) / 512 + 1)) * 512;
    const pick = random();
    if (pick < 0.75) {
      const data = new Uint8Array(length);
      fillRandom(data, random);
      // Every third write comes in pieces, as an NBD payload that straddled socket reads does;
      // half are immutable, as the NBD server's are (kept by the journal, not copied, if large).
      const cut = Math.floor(random() * (length + 1));
      records.push({ kind: 'write', offset, data: i % 3 === 0 ? [data.subarray(0, cut), data.subarray(cut)] : data, immutable: random() < 0.5 });
    } else {
      records.push({ kind: pick < 0.9 ? 'zero' : 'trim', offset, length });
    }
  }
  return records;
}

function appendOk(journal: Journal, record: JournalRecord): number {
  const result = journal.append(record);
  if (!result.ok) throw new Error(`append refused: ${JSON.stringify(result)}`);
  return result.seq;
}

describe('Journal: append, seal, coalesce', () => {
  it('replaying the coalesced sealed segments over a base equals replaying the raw records (several seeds)', async () => {
    for (const seed of [11, 12, 13, 14, 15]) {
      const jdir = join(dir, `seed-${seed}`);
      const diskBytes = 512 * K;
      const base = Buffer.alloc(diskBytes);
      fillRandom(base, createPrng(seed * 31));
      const records = randomRecords(seed, 600, diskBytes);
      // Small segments so size-triggered seals happen in the middle of the run.
      const journal = await Journal.open(jdir, { segmentMaxAgeMs: 0, segmentMaxBytes: 256 * K });
      const seqs: number[] = [];
      for (const r of records) {
        seqs.push(appendOk(journal, r));
        if (seqs.length % 37 === 0) await journal.written();
      }
      expect(seqs).toEqual(records.map((_, i) => i + 1));
      await journal.seal();
      const segments = journal.sealedSegments();
      expect(segments.length).toBeGreaterThan(3);
      // Seq ranges are contiguous and cover every record.
      expect(segments[0]!.firstSeq).toBe(1);
      for (let i = 1; i < segments.length; i++) expect(segments[i]!.firstSeq).toBe(segments[i - 1]!.lastSeq + 1);
      expect(segments[segments.length - 1]!.lastSeq).toBe(records.length);

      const raw = Buffer.from(base);
      for (const r of records) applyRecord(raw, r);
      const coalesced = Buffer.from(base);
      await applySegments(coalesced, segments);
      expect(sha(coalesced)).toBe(sha(raw));

      // Each prefix of segments equals the raw replay up to that segment's lastSeq.
      const prefix = Buffer.from(base);
      const rawPrefix = Buffer.from(base);
      let applied = 0;
      for (const segment of segments.slice(0, 3)) {
        await applySegments(prefix, [segment]);
        for (; applied < segment.lastSeq; applied++) applyRecord(rawPrefix, records[applied]!);
        expect(sha(prefix)).toBe(sha(rawPrefix));
      }
      await journal.close();
    }
  }, 60_000);

  it('splits partial overlaps exactly: last write wins, zero and trim included', async () => {
    const journal = await Journal.open(dir, { segmentMaxAgeMs: 0 });
    const fill = (byte: number, length: number): Uint8Array => new Uint8Array(length).fill(byte);
    appendOk(journal, { kind: 'write', offset: 0, data: fill(0xaa, 8 * K) }); // seq 1: [0, 8K)
    appendOk(journal, { kind: 'write', offset: 2 * K, data: fill(0xbb, 2 * K) }); // seq 2: [2K, 4K)
    appendOk(journal, { kind: 'zero', offset: 6 * K, length: 4 * K }); // seq 3: [6K, 10K)
    appendOk(journal, { kind: 'trim', offset: 10 * K, length: 512 }); // seq 4: [10K, 10.5K)
    appendOk(journal, { kind: 'write', offset: 512, data: fill(0xcc, 512) }); // seq 5: [512, 1K)
    const segment = await journal.seal();
    expect(segment).toBeDefined();
    const extents: { kind: string; offset: number; length: number; byte?: number }[] = [];
    for await (const e of segment!.readExtents()) {
      const data = e.data && joined(e.data);
      extents.push({ kind: e.kind, offset: e.offset, length: e.length, ...(data ? { byte: data[0] } : {}) });
      if (data) expect(data.every((b) => b === data[0])).toBe(true);
    }
    expect(extents).toEqual([
      { kind: 'write', offset: 0, length: 512, byte: 0xaa },
      { kind: 'write', offset: 512, length: 512, byte: 0xcc },
      { kind: 'write', offset: K, length: K, byte: 0xaa },
      { kind: 'write', offset: 2 * K, length: 2 * K, byte: 0xbb },
      { kind: 'write', offset: 4 * K, length: 2 * K, byte: 0xaa },
      { kind: 'zero', offset: 6 * K, length: 4 * K + 512 }, // zero and trim merged
    ]);
    expect(segment!.firstSeq).toBe(1);
    expect(segment!.lastSeq).toBe(5);
    await journal.close();
  });

  it('reads repeated writes coalesced to one extent, reads large writes whole, and seals on age', async () => {
    const journal = await Journal.open(dir, { segmentMaxAgeMs: 50 });
    const sealedEvents: SealedSegment[] = [];
    journal.on('sealed', (s) => sealedEvents.push(s));
    const big = new Uint8Array(5 * K * K + 512);
    fillRandom(big, createPrng(5));
    for (let i = 0; i < 10; i++) appendOk(journal, { kind: 'write', offset: 4 * K, data: new Uint8Array(64 * K).fill(i) });
    appendOk(journal, { kind: 'write', offset: K * K, data: big });
    await journal.written();
    const started = Date.now();
    while (sealedEvents.length === 0 && Date.now() - started < 10_000) await new Promise((resolve) => setTimeout(resolve, 10));
    expect(sealedEvents.length).toBe(1);
    const [segment] = journal.sealedSegments();
    expect(segment).toBe(sealedEvents[0]);
    const extents = [];
    for await (const e of segment!.readExtents()) extents.push(e);
    expect(extents.length).toBe(2);
    expect(joined(extents[0]!.data!).every((b) => b === 9)).toBe(true);
    expect(sha(joined(extents[1]!.data!))).toBe(sha(big));
    // The file holds every record; what is read (and shipped) dropped the nine overwritten copies.
    expect(segment!.sizeBytes).toBe(segmentHeaderBytes + 11 * entryHeaderBytes + 10 * 64 * K + big.length);
    expect(extents.reduce((sum, e) => sum + e.length, 0)).toBe(64 * K + big.length);
    await journal.close();
  });

  it('sync() puts every appended record in the open segment file, readable with the codec', async () => {
    const journal = await Journal.open(dir, { segmentMaxAgeMs: 0 });
    const data = new Uint8Array(4 * K);
    fillRandom(data, createPrng(9));
    appendOk(journal, { kind: 'write', offset: 8 * K, data });
    appendOk(journal, { kind: 'trim', offset: 0, length: 512 });
    await journal.sync();
    const [name] = (await readdir(dir)).filter((n) => n.startsWith('open-'));
    const bytes = await readFile(join(dir, name!));
    const first = decodeEntryHeader(bytes.subarray(segmentHeaderBytes));
    expect(first).toMatchObject({ seq: 1, kind: 'write', offset: 8 * K, length: 4 * K });
    const dataAt = segmentHeaderBytes + entryHeaderBytes;
    expect(sha(bytes.subarray(dataAt, dataAt + 4 * K))).toBe(sha(data));
    const second = decodeEntryHeader(bytes.subarray(dataAt + 4 * K));
    expect(second).toMatchObject({ seq: 2, kind: 'trim', offset: 0, length: 512 });
    expect(bytes.length).toBe(dataAt + 4 * K + entryHeaderBytes);
    await journal.close();
  });

  it('reports the hard limit instead of appending, and accepts again once segments are released', async () => {
    const journal = await Journal.open(dir, { segmentMaxAgeMs: 0, hardLimitBytes: 40 * K });
    const data = new Uint8Array(16 * K);
    expect(appendOk(journal, { kind: 'write', offset: 0, data })).toBe(1);
    expect(appendOk(journal, { kind: 'write', offset: 0, data })).toBe(2);
    const refused = journal.append({ kind: 'write', offset: 0, data });
    expect(refused.ok).toBe(false);
    expect(refused).toMatchObject({ reason: 'hard-limit', hardLimitBytes: 40 * K });
    expect(journal.nextSeq).toBe(3); // a refused record takes no seq
    const segment = await journal.seal();
    expect(journal.unshippedBytes).toBe(segment!.sizeBytes);
    expect(segment!.sizeBytes).toBe(segmentHeaderBytes + 2 * (entryHeaderBytes + 16 * K));
    expect(journal.append({ kind: 'write', offset: 0, data }).ok).toBe(false); // sealed, not yet shipped
    await journal.release(segment!);
    expect(appendOk(journal, { kind: 'write', offset: 0, data })).toBe(3);
    await expect(stat(segment!.path)).rejects.toMatchObject({ code: 'ENOENT' });
    expect(journal.sealedSegments()).toEqual([]);
    expect(journal.unshippedBytes).toBe(16 * K + entryHeaderBytes);
    await journal.close();
  });

  it('keeps seqs going after every segment was released and the journal reopened', async () => {
    let journal = await Journal.open(dir, { segmentMaxAgeMs: 0 });
    for (let i = 0; i < 5; i++) appendOk(journal, { kind: 'zero', offset: i * 512, length: 512 });
    const segment = await journal.seal();
    await journal.release(segment!);
    await journal.close();
    journal = await Journal.open(dir, { segmentMaxAgeMs: 0 });
    expect(journal.nextSeq).toBe(6);
    expect(appendOk(journal, { kind: 'zero', offset: 0, length: 512 })).toBe(6);
    await journal.close();
  });

  it('releases many segments at once (as a shipper does): all succeed, none left on disk, seqs never go back', async () => {
    let journal = await Journal.open(dir, { segmentMaxAgeMs: 0 });
    const segments: SealedSegment[] = [];
    for (let s = 0; s < 12; s++) {
      for (let i = 0; i < 3; i++) appendOk(journal, { kind: 'write', offset: i * 4 * K, data: new Uint8Array(4 * K).fill(s) });
      await journal.written(); // on disk, so release has a file to delete
      segments.push((await journal.seal())!);
    }
    // Released together, newest first: each one persists a seq floor, all at once.
    await Promise.all(segments.reverse().map((segment) => journal.release(segment)));
    expect(journal.sealedSegments()).toEqual([]);
    for (const segment of segments) await expect(stat(segment.path)).rejects.toMatchObject({ code: 'ENOENT' });
    await journal.close();
    journal = await Journal.open(dir, { segmentMaxAgeMs: 0 });
    expect(journal.nextSeq).toBe(37);
    await journal.close();
  });

  it('copies appended data: the caller may reuse its buffer at once', async () => {
    const journal = await Journal.open(dir, { segmentMaxAgeMs: 0 });
    const buffer = new Uint8Array(8 * K).fill(1);
    appendOk(journal, { kind: 'write', offset: 0, data: buffer });
    buffer.fill(2);
    appendOk(journal, { kind: 'write', offset: 16 * K, data: buffer });
    buffer.fill(3);
    const extents = [];
    for await (const e of (await journal.seal())!.readExtents()) extents.push({ offset: e.offset, bytes: new Set(joined(e.data!)) });
    expect(extents).toEqual([
      { offset: 0, bytes: new Set([1]) },
      { offset: 16 * K, bytes: new Set([2]) },
    ]);
    await journal.close();
  });

  it('bounds the records held in memory: backlog() writes them to files once they pass maxMemoryBytes', async () => {
    const journal = await Journal.open(dir, { segmentMaxAgeMs: 0, segmentMaxBytes: 40 * K, maxMemoryBytes: 64 * K });
    appendOk(journal, { kind: 'write', offset: 0, data: new Uint8Array(32 * K) });
    expect(journal.backlog()).toBeUndefined();
    const sealedEvent = new Promise((resolve) => journal.once('sealed', resolve));
    appendOk(journal, { kind: 'write', offset: 0, data: new Uint8Array(32 * K) }); // rotates and seals (in memory)
    await sealedEvent;
    expect(journal.sealedSegments()).toHaveLength(1);
    const [sealed] = journal.sealedSegments();
    await expect(stat(sealed!.path)).rejects.toMatchObject({ code: 'ENOENT' }); // in memory: no file yet
    const backlog = journal.backlog();
    expect(backlog).toBeInstanceOf(Promise);
    await backlog;
    expect(journal.memoryBytes).toBe(0);
    expect(journal.backlog()).toBeUndefined();
    expect((await stat(sealed!.path)).size).toBe(sealed!.sizeBytes);
    await journal.close();
  });

  it('lets the memory of spilled segments go while they wait to ship, however many wait', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    // V8 may free the memory of collected ArrayBuffers after gc() returns (its sweeper runs
    // on another thread): the figure is read once it no longer drops.
    const settledArrayBuffers = async (): Promise<number> => {
      let last = Infinity;
      for (;;) {
        gc();
        await new Promise((resolve) => setTimeout(resolve, 10));
        const now = process.memoryUsage().arrayBuffers;
        if (now >= last) return now;
        last = now;
      }
    };
    const journal = await Journal.open(dir, { segmentMaxAgeMs: 0, segmentMaxBytes: 1024 * K, maxMemoryBytes: 2048 * K });
    const before = await settledArrayBuffers();
    const data = new Uint8Array(128 * K);
    for (let i = 0; i < 512; i++) {
      appendOk(journal, { kind: 'write', offset: i * 128 * K, data }); // 64 MiB in all, none shipped
      await journal.backlog(); // as the tracker's writers do: spills once past maxMemoryBytes
    }
    expect(journal.sealedSegments().length).toBeGreaterThan(50);
    expect(journal.memoryBytes).toBeLessThan(4096 * K);
    expect((await settledArrayBuffers()) - before).toBeLessThan(16 * 1024 * K);
    await journal.close();
  });

  it('reads a sealed segment of format version 1 (coalesced extents, written by the previous build)', async () => {
    // Version 1 sealing rewrote the records as non-overlapping extents in offset order.
    const header = Buffer.alloc(segmentHeaderBytes);
    header.write('FJSG', 0, 'latin1');
    header.writeUInt16BE(1, 4);
    header.writeUInt8(2, 6); // coalesced
    header.writeBigUInt64BE(7n, 8);
    header.writeBigUInt64BE(9n, 16);
    header.writeUInt32BE(2, 24);
    header.writeUInt32BE(crc32(header.subarray(0, 28)), 28);
    const entry = (seq: number, kind: number, offset: number, data: Buffer | undefined, length = data?.length ?? 0): Buffer => {
      const h = Buffer.alloc(entryHeaderBytes);
      h.writeBigUInt64BE(BigInt(seq), 0);
      h.writeBigUInt64BE(BigInt(offset), 8);
      h.writeBigUInt64BE(BigInt(length), 16);
      h.writeUInt8(kind, 24);
      h.writeUInt32BE(crc32(data ?? Buffer.alloc(0), crc32(h.subarray(0, 28))), 28);
      return Buffer.concat([h, data ?? Buffer.alloc(0)]);
    };
    const data = Buffer.alloc(4 * K, 0x77);
    const name = 'sealed-0000000000000007-0000000000000009.jseg';
    await writeFile(join(dir, name), Buffer.concat([header, entry(9, 2, 0, undefined, 8 * K), entry(7, 1, 8 * K, data)]));
    const journal = await Journal.open(dir, { segmentMaxAgeMs: 0 });
    expect(journal.nextSeq).toBe(10);
    const [segment] = journal.sealedSegments();
    const extents = [];
    for await (const e of segment!.readExtents()) extents.push({ kind: e.kind, offset: e.offset, length: e.length, same: e.data && joined(e.data).equals(data) });
    expect(extents).toEqual([
      { kind: 'zero', offset: 0, length: 8 * K, same: undefined },
      { kind: 'write', offset: 8 * K, length: 4 * K, same: true },
    ]);
    await journal.close();
  });

  it('names the file when a sealed segment is corrupt', async () => {
    const journal = await Journal.open(dir, { segmentMaxAgeMs: 0 });
    appendOk(journal, { kind: 'write', offset: 0, data: new Uint8Array(8 * K).fill(7) });
    appendOk(journal, { kind: 'write', offset: 64 * K, data: new Uint8Array(8 * K).fill(8) });
    const segment = (await journal.seal())!;
    await journal.sync(); // sealed in memory until now
    const handle = await open(segment.path, 'r+');
    const at = segment.sizeBytes - 100; // inside the second extent's data
    const byte = Buffer.alloc(1);
    await handle.read(byte, 0, 1, at);
    byte[0] = byte[0]! ^ 0x40;
    await handle.write(byte, 0, 1, at);
    await handle.close();
    let error: unknown;
    try {
      await segment.verify();
    } catch (err) {
      error = err;
    }
    expect(isFerryError(error, 'checksum-mismatch')).toBe(true);
    expect((error as Error).message).toContain(segment.path);
    // Truncation is caught too.
    await truncate(segment.path, segment.sizeBytes - 1);
    await expect(segment.verify()).rejects.toThrow(segment.path);
    await journal.close();
  });
});

describe('Journal: crash recovery', () => {
  /**
   * A crash right after sync(): the files stay as they are. Closing a synced journal writes
   * nothing more (checked here), so the tests close it instead of leaving its file handles
   * for the garbage collector, which Node warns about.
   */
  async function crash(journal: Journal): Promise<void> {
    const filesAndSizes = async () =>
      Promise.all((await readdir(dir)).sort().map(async (name) => [name, (await stat(join(dir, name))).size]));
    const before = await filesAndSizes();
    await journal.close();
    expect(await filesAndSizes()).toEqual(before);
  }

  it('sync() makes segments sealed in memory durable files: a crash right after loses none of their records', async () => {
    const diskBytes = 256 * K;
    const records = randomRecords(123, 60, diskBytes);
    const journal = await Journal.open(dir, { segmentMaxAgeMs: 0 });
    records.slice(0, 30).forEach((r) => appendOk(journal, r));
    const inMemory = (await journal.seal())!; // nothing asked for the disk yet: kept in memory
    await expect(stat(inMemory.path)).rejects.toMatchObject({ code: 'ENOENT' });
    records.slice(30).forEach((r) => appendOk(journal, r));
    await journal.sync();
    expect((await stat(inMemory.path)).size).toBe(inMemory.sizeBytes);
    await crash(journal); // a new journal finds every record on disk
    const reopened = await Journal.open(dir, { segmentMaxAgeMs: 0 });
    expect(reopened.nextSeq).toBe(61);
    await reopened.seal();
    expect(reopened.sealedSegments().map((s) => [s.firstSeq, s.lastSeq])).toEqual([[1, 30], [31, 60]]);
    const expected = Buffer.alloc(diskBytes);
    records.forEach((r) => applyRecord(expected, r));
    const replayed = Buffer.alloc(diskBytes);
    await applySegments(replayed, reopened.sealedSegments());
    expect(sha(replayed)).toBe(sha(expected));
    for (const segment of reopened.sealedSegments()) await segment.verify(); // read from files, crcs checked
    await reopened.close();
  });

  /** Appends records, makes them durable, and crashes. */
  async function crashAfter(records: JournalRecord[]): Promise<void> {
    const journal = await Journal.open(dir, { segmentMaxAgeMs: 0 });
    for (const r of records) appendOk(journal, r);
    await journal.sync();
    await crash(journal);
  }

  async function openFile(): Promise<string> {
    const names = (await readdir(dir)).filter((n) => n.startsWith('open-')).sort();
    return join(dir, names[names.length - 1]!);
  }

  async function replayAll(journal: Journal, base: Buffer): Promise<Buffer> {
    await journal.seal();
    const disk = Buffer.from(base);
    await applySegments(disk, journal.sealedSegments());
    return disk;
  }

  for (const damage of ['truncate mid-record', 'truncate mid-header', 'flip a data byte', 'flip a header byte'] as const) {
    it(`drops a torn tail (${damage}) and continues seq from the last complete record`, async () => {
      const diskBytes = 256 * K;
      const records = randomRecords(77, 40, diskBytes).map((r, i): JournalRecord =>
        i === 39 ? { kind: 'write', offset: 4 * K, data: new Uint8Array(8 * K).fill(0x5a) } : r,
      );
      // First 20 records sealed; the rest stay in the open segment.
      const journal = await Journal.open(dir, { segmentMaxAgeMs: 0 });
      records.slice(0, 20).forEach((r) => appendOk(journal, r));
      await journal.seal();
      records.slice(20).forEach((r) => appendOk(journal, r));
      await journal.sync();
      await crash(journal);
      const path = await openFile();
      const size = (await stat(path)).size;
      const lastRecordStart = size - entryHeaderBytes - 8 * K;
      const handle = await open(path, 'r+');
      if (damage === 'truncate mid-record') await handle.truncate(size - 100);
      if (damage === 'truncate mid-header') await handle.truncate(lastRecordStart + 10);
      if (damage === 'flip a data byte' || damage === 'flip a header byte') {
        const at = damage === 'flip a data byte' ? size - 1 : lastRecordStart + 12; // in the offset field
        const byte = Buffer.alloc(1);
        await handle.read(byte, 0, 1, at);
        byte[0] = byte[0]! ^ 0x01;
        await handle.write(byte, 0, 1, at);
      }
      await handle.close();

      const reopened = await Journal.open(dir, { segmentMaxAgeMs: 0 });
      expect(reopened.nextSeq).toBe(40);
      expect(reopened.sealedSegments().map((s) => [s.firstSeq, s.lastSeq])).toEqual([[1, 20]]);
      expect((await stat(path)).size).toBe(lastRecordStart);
      const base = Buffer.alloc(diskBytes);
      const expected = Buffer.from(base);
      records.slice(0, 39).forEach((r) => applyRecord(expected, r));
      // The next record gets seq 40, and replay includes it.
      const next: JournalRecord = { kind: 'write', offset: 0, data: new Uint8Array(512).fill(3) };
      expect(appendOk(reopened, next)).toBe(40);
      applyRecord(expected, next);
      expect(sha(await replayAll(reopened, base))).toBe(sha(expected));
      await reopened.close();
    });
  }

  it('drops everything from a damaged record in the middle on (later records were never synced past it)', async () => {
    const records = randomRecords(5, 10, 64 * K).map((r): JournalRecord => (r.kind === 'write' ? r : { kind: 'write', offset: r.offset, data: new Uint8Array(r.length).fill(1) }));
    await crashAfter(records);
    const path = await openFile();
    const handle = await open(path, 'r+');
    // Damage the 4th record's header (seq field).
    let at = segmentHeaderBytes;
    for (let i = 0; i < 3; i++) at += entryHeaderBytes + writeDataBytes((records[i] as { data: WriteData }).data);
    await handle.write(Buffer.from([0xff]), 0, 1, at + 7);
    await handle.close();
    const reopened = await Journal.open(dir, { segmentMaxAgeMs: 0 });
    expect(reopened.nextSeq).toBe(4);
    await reopened.close();
  });

  it('sealed segments survive; an open segment caught mid-seal is sealed again or deleted if already sealed', async () => {
    const diskBytes = 128 * K;
    const records = randomRecords(99, 30, diskBytes);
    const journal = await Journal.open(dir, { segmentMaxAgeMs: 0 });
    records.slice(0, 10).forEach((r) => appendOk(journal, r));
    await journal.seal(); // sealed 1..10
    records.slice(10, 20).forEach((r) => appendOk(journal, r));
    await journal.sync();
    const midSeal = await openFile();
    const saved = `${midSeal}.saved`;
    await copyFile(midSeal, saved);
    const second = (await journal.seal())!; // sealed 11..20
    records.slice(20).forEach((r) => appendOk(journal, r));
    await journal.sync();
    // Crash 1: after the rename, before the old open file was deleted.
    await copyFile(saved, midSeal);
    let reopened = await Journal.open(dir, { segmentMaxAgeMs: 0 });
    expect(reopened.sealedSegments().map((s) => [s.firstSeq, s.lastSeq])).toEqual([[1, 10], [11, 20]]);
    expect(reopened.nextSeq).toBe(31);
    await expect(stat(midSeal)).rejects.toMatchObject({ code: 'ENOENT' });
    await reopened.close();
    // Crash 2: before the sealed file was renamed into place: the open file is sealed again.
    await unlink(second.path);
    await copyFile(saved, midSeal);
    await writeFile(`${second.path}.tmp`, 'half-written');
    reopened = await Journal.open(dir, { segmentMaxAgeMs: 0 });
    expect(reopened.sealedSegments().map((s) => [s.firstSeq, s.lastSeq])).toEqual([[1, 10], [11, 20]]);
    expect((await readdir(dir)).some((n) => n.endsWith('.tmp'))).toBe(false);
    expect(reopened.nextSeq).toBe(31);
    const expected = Buffer.alloc(diskBytes);
    records.forEach((r) => applyRecord(expected, r));
    expect(sha(await replayAll(reopened, Buffer.alloc(diskBytes)))).toBe(sha(expected));
    await reopened.close();
  });
});
