/**
 * readChunks (src/core/chunker.ts): the chunks of several disks, in disk and chunk order from
 * `from` on, each with its offset, bytes, zero flag and SHA-256; at most `buffers` chunks
 * read, ready or held by the consumer at once; an early end leaves no read running; a read
 * error (mapped by `readError`) and an abort end the iteration.
 *
 * The disks are real files (FileDevice) behind a wrapper that counts reads: started,
 * finished, in flight, and how far the reads run ahead of the consumer's releases. The
 * wrapper can hold each read for a few event-loop turns so that reads overlap.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  FerryError,
  FileDevice,
  isFerryError,
  readChunks,
  type BlockDevice,
  type DiskChunk,
  type ReadChunksOptions,
  type WriteData,
  type WriteOptions,
} from '../../src/core/index.js';
import { createPrng, fillRandom } from '../support/random-workload.js';
import { tempDir } from '../support/temp.js';

const chunkSizeBytes = 4096;

/** Lets pending IO callbacks and resolved promises run, `n` event-loop turns. */
async function turns(n: number): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

/** What every disk of one run shares: counts of reads and of the consumer's releases. */
class ReadCounter {
  started = 0;
  finished = 0;
  inFlight = 0;
  maxInFlight = 0;
  released = 0;
  /** Most chunks read (or being read) and not yet released, seen when a read starts. */
  maxAhead = 0;
  /** Every read, in the order started: disk, offset, length. */
  readonly reads: Array<{ disk: number; offset: number; length: number }> = [];
}

interface CountingOptions {
  /** Event-loop turns each read takes on top of the file's own read (default 0). */
  delayTurns?: number;
  /** An error to fail the read at this offset with, if any. */
  failAt?: (offset: number) => unknown;
  /** Reads after the first `gateAfter` do not finish before `gate` resolves. */
  gate?: Promise<void>;
  gateAfter?: number;
}

/** A BlockDevice that counts its reads into a shared counter (and may slow or fail them). */
class CountingDevice implements BlockDevice {
  constructor(
    private readonly inner: BlockDevice,
    private readonly disk: number,
    private readonly counter: ReadCounter,
    private readonly options: CountingOptions = {},
  ) {}

  get sizeBytes(): number {
    return this.inner.sizeBytes;
  }

  get readOnly(): boolean {
    return this.inner.readOnly;
  }

  async read(buf: Uint8Array, offset: number): Promise<void> {
    const c = this.counter;
    const ordinal = ++c.started;
    c.inFlight++;
    c.maxInFlight = Math.max(c.maxInFlight, c.inFlight);
    c.maxAhead = Math.max(c.maxAhead, c.started - c.released);
    c.reads.push({ disk: this.disk, offset, length: buf.byteLength });
    try {
      await turns(this.options.delayTurns ?? 0);
      const failure = this.options.failAt?.(offset);
      if (failure !== undefined) throw failure;
      await this.inner.read(buf, offset);
      await turns(this.options.delayTurns ?? 0);
      if (this.options.gate && ordinal > (this.options.gateAfter ?? 0)) await this.options.gate;
    } finally {
      c.inFlight--;
      c.finished++;
    }
  }

  write(data: WriteData, offset: number, options?: WriteOptions): Promise<void> {
    return this.inner.write(data, offset, options);
  }

  writeZeroes(offset: number, length: number, options?: WriteOptions): Promise<void> {
    return this.inner.writeZeroes(offset, length, options);
  }

  trim(offset: number, length: number, options?: WriteOptions): Promise<void> {
    return this.inner.trim(offset, length, options);
  }

  flush(): Promise<void> {
    return this.inner.flush();
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

/** A chunk's kind: all zeros, random bytes, or zeros but for its very last byte. */
type Kind = 'zero' | 'random' | 'last-byte';

/** Three disks: whole and short last chunks, zero and non-zero ones (and one of 512 bytes). */
const layouts: Array<{ sizeBytes: number; kinds: Kind[] }> = [
  // 5 whole chunks and a short one of 1536 bytes
  { sizeBytes: 5 * chunkSizeBytes + 1536, kinds: ['random', 'zero', 'zero', 'last-byte', 'random', 'random'] },
  // 4 whole chunks, the last one whole too
  { sizeBytes: 4 * chunkSizeBytes, kinds: ['zero', 'random', 'random', 'zero'] },
  // a whole random chunk, then a short all-zero one of 512 bytes
  { sizeBytes: chunkSizeBytes + 512, kinds: ['random', 'zero'] },
];

function diskContent(layout: { sizeBytes: number; kinds: Kind[] }, random: () => number): Buffer {
  const content = Buffer.alloc(layout.sizeBytes);
  layout.kinds.forEach((kind, index) => {
    const chunk = content.subarray(index * chunkSizeBytes, Math.min(layout.sizeBytes, (index + 1) * chunkSizeBytes));
    if (kind === 'random') {
      fillRandom(chunk, random);
      chunk[0] = 1; // never all zero by chance
    } else if (kind === 'last-byte') {
      chunk[chunk.length - 1] = 0x80;
    }
  });
  return content;
}

interface Expected {
  disk: number;
  index: number;
  offset: number;
  length: number;
  zero: boolean;
  sha256: string | undefined;
}

/** What readChunks should yield for these contents from `from` on, computed independently. */
function expectedChunks(contents: Buffer[], from = { disk: 0, chunk: 0 }): Expected[] {
  const out: Expected[] = [];
  contents.forEach((content, disk) => {
    for (let index = 0; index * chunkSizeBytes < content.length; index++) {
      if (disk < from.disk || (disk === from.disk && index < from.chunk)) continue;
      const offset = index * chunkSizeBytes;
      const data = content.subarray(offset, Math.min(content.length, offset + chunkSizeBytes));
      const zero = data.every((b) => b === 0);
      out.push({ disk, index, offset, length: data.length, zero, sha256: zero ? undefined : createHash('sha256').update(data).digest('hex') });
    }
  });
  return out;
}

/** What a chunk said, with its bytes checked against the disk's content (before release). */
function observe(chunk: DiskChunk, contents: Buffer[]): Expected & { dataMatches: boolean } {
  const content = contents[chunk.disk]!;
  const dataMatches = chunk.data.equals(content.subarray(chunk.offset, chunk.offset + chunk.data.length));
  return { disk: chunk.disk, index: chunk.index, offset: chunk.offset, length: chunk.data.length, zero: chunk.zero, sha256: chunk.sha256, dataMatches };
}

let dir: { path: string; cleanup: () => Promise<void> };
let files: FileDevice[] = [];

/** Opens the three layouts as files filled from `seed`; returns their contents. */
async function makeDisks(seed: number): Promise<{ contents: Buffer[]; files: FileDevice[] }> {
  const random = createPrng(seed);
  const contents = layouts.map((layout) => diskContent(layout, random));
  const opened: FileDevice[] = [];
  for (const [i, content] of contents.entries()) {
    const path = join(dir.path, `seed-${seed}-disk-${i}.img`);
    await writeFile(path, content);
    opened.push(await FileDevice.open(path, { readOnly: true }));
  }
  files.push(...opened);
  return { contents, files: opened };
}

function counted(devices: FileDevice[], counter: ReadCounter, options: CountingOptions = {}): CountingDevice[] {
  return devices.map((device, disk) => new CountingDevice(device, disk, counter, options));
}

/** Reads everything, releasing each chunk at once; checks every chunk's bytes. */
async function readAll(options: ReadChunksOptions, contents: Buffer[], counter?: ReadCounter) {
  const seen: Array<Expected & { dataMatches: boolean }> = [];
  for await (const chunk of readChunks(options)) {
    seen.push(observe(chunk, contents));
    if (counter) counter.released++; // counted first: the release may start the next read at once
    chunk.release();
  }
  return seen;
}

beforeAll(async () => (dir = await tempDir('ferry-chunker-')));
afterAll(async () => {
  for (const file of files) await file.close();
  files = [];
  await dir.cleanup();
});

describe('readChunks: order, offsets, data, zero flags and hashes', () => {
  it.each([
    { seed: 1, buffers: 1, hashWorkers: 1 },
    { seed: 2, buffers: 4, hashWorkers: 2 },
    { seed: 3, buffers: 16, hashWorkers: 3 },
  ])('yields every chunk of three disks in order (seed $seed, $buffers buffers, $hashWorkers hash workers)', async ({ seed, buffers, hashWorkers }) => {
    const { contents, files: disks } = await makeDisks(seed);
    const counter = new ReadCounter();
    const seen = await readAll({ disks: counted(disks, counter, { delayTurns: 1 }), chunkSizeBytes, buffers, hashWorkers }, contents, counter);

    const expected = expectedChunks(contents);
    // The fixture has what the test is about: zero and non-zero chunks, short last chunks.
    expect(expected.some((c) => c.zero)).toBe(true);
    expect(expected.some((c) => !c.zero)).toBe(true);
    expect(expected.some((c) => c.length < chunkSizeBytes && c.zero)).toBe(true);
    expect(expected.some((c) => c.length < chunkSizeBytes && !c.zero)).toBe(true);
    expect(expected.filter((c) => c.length === 512)).toHaveLength(1);

    expect(seen).toEqual(expected.map((c) => ({ ...c, dataMatches: true })));
    // Each chunk read exactly once, and nothing read past a disk's end.
    expect(counter.reads).toEqual(expected.map((c) => ({ disk: c.disk, offset: c.offset, length: c.length })));
    expect(counter.started).toBe(counter.finished);
  });

  it('marks a chunk that is zero but for its last byte as non-zero, with the right hash (seed 4)', async () => {
    const { contents, files: disks } = await makeDisks(4);
    const seen = await readAll({ disks, chunkSizeBytes, buffers: 2 }, contents);
    const lastByte = seen.find((c) => c.disk === 0 && c.index === 3)!;
    const bytes = Buffer.alloc(chunkSizeBytes);
    bytes[chunkSizeBytes - 1] = 0x80;
    expect(lastByte).toMatchObject({ zero: false, sha256: createHash('sha256').update(bytes).digest('hex'), dataMatches: true });
  });

  it.each([
    { from: { disk: 0, chunk: 0 }, first: { disk: 0, index: 0 } },
    { from: { disk: 0, chunk: 3 }, first: { disk: 0, index: 3 } },
    { from: { disk: 0, chunk: 5 }, first: { disk: 0, index: 5 } }, // the short last chunk
    { from: { disk: 1, chunk: 2 }, first: { disk: 1, index: 2 } },
    { from: { disk: 2, chunk: 1 }, first: { disk: 2, index: 1 } },
    { from: { disk: 0, chunk: 6 }, first: { disk: 1, index: 0 } }, // just past disk 0's end: disk 1 next
  ])('starts at from = $from.disk/$from.chunk and reads nothing before it (seed 5)', async ({ from, first }) => {
    const { contents, files: disks } = await makeDisks(5);
    const counter = new ReadCounter();
    const seen = await readAll({ disks: counted(disks, counter), chunkSizeBytes, from, buffers: 3 }, contents, counter);
    const start = first.disk === from.disk ? from : { disk: first.disk, chunk: 0 };
    const expected = expectedChunks(contents, start);
    expect(seen[0]).toMatchObject(first);
    expect(seen).toEqual(expected.map((c) => ({ ...c, dataMatches: true })));
    expect(counter.reads).toEqual(expected.map((c) => ({ disk: c.disk, offset: c.offset, length: c.length })));
  });

  it('yields nothing when from is past the last disk (seed 6)', async () => {
    const { contents, files: disks } = await makeDisks(6);
    const counter = new ReadCounter();
    expect(await readAll({ disks: counted(disks, counter), chunkSizeBytes, from: { disk: 3, chunk: 0 }, buffers: 2 }, contents)).toEqual([]);
    expect(counter.started).toBe(0);
  });
});

describe('readChunks: buffers', () => {
  it('never has more than `buffers` chunks read ahead of the releases, and keeps held chunks intact (seed 7)', async () => {
    const { contents, files: disks } = await makeDisks(7);
    const counter = new ReadCounter();
    const random = createPrng(70);
    const buffers = 3;
    const held: Array<{ chunk: DiskChunk; copy: Buffer }> = [];
    let seen = 0;
    const releaseOldest = () => {
      const { chunk, copy } = held.shift()!;
      // The bytes are still the chunk's own while it is held, whatever was read since.
      expect(chunk.data.equals(copy)).toBe(true);
      counter.released++; // counted first: the release may start the next read at once
      chunk.release();
    };
    for await (const chunk of readChunks({ disks: counted(disks, counter, { delayTurns: 1 }), chunkSizeBytes, buffers })) {
      seen++;
      expect(chunk.data.equals(contents[chunk.disk]!.subarray(chunk.offset, chunk.offset + chunk.data.length))).toBe(true);
      held.push({ chunk, copy: Buffer.from(chunk.data) });
      // The consumer keeps up to two chunks (an upload under way) and works a while on each.
      if (held.length === 2 || random() < 0.3) releaseOldest();
      await turns(1 + Math.floor(random() * 4));
    }
    while (held.length > 0) releaseOldest();
    expect(seen).toBe(expectedChunks(contents).length);
    expect(counter.maxAhead).toBe(buffers); // reached, and never more
    expect(counter.maxInFlight).toBeGreaterThan(1); // reads overlapped...
    expect(counter.maxInFlight).toBeLessThanOrEqual(buffers); // ...within the pool
  });

  it('blocks the reader while the consumer holds every buffer, and goes on once one is released (seed 8)', async () => {
    const { contents, files: disks } = await makeDisks(8);
    const counter = new ReadCounter();
    const buffers = 2;
    const chunks = readChunks({ disks: counted(disks, counter, { delayTurns: 1 }), chunkSizeBytes, buffers });
    const first = (await chunks.next()).value as DiskChunk;
    const second = (await chunks.next()).value as DiskChunk;
    expect([first.index, second.index]).toEqual([0, 1]);

    let third: IteratorResult<DiskChunk> | undefined;
    const pending = chunks.next().then((r) => (third = r));
    await turns(30);
    expect(third).toBeUndefined();
    expect(counter.started).toBe(buffers);
    expect(counter.inFlight).toBe(0);

    // Give back the later one first: the consumer may release in any order.
    second.release();
    second.release(); // a second call does nothing
    await pending;
    const thirdChunk = third!.value as DiskChunk;
    expect(thirdChunk).toMatchObject({ disk: 0, index: 2, offset: 2 * chunkSizeBytes, zero: true, sha256: undefined });
    expect(first.data.equals(contents[0]!.subarray(0, chunkSizeBytes))).toBe(true); // still held, still intact
    await turns(30);
    expect(counter.started).toBe(buffers + 1); // one buffer given back, one more read

    await chunks.return(undefined);
    first.release();
    thirdChunk.release();
  });
});

describe('readChunks: ending early, errors and abort', () => {
  it('leaves no read running when the consumer breaks out, and starts none after (seed 9)', async () => {
    const { files: disks } = await makeDisks(9);
    const counter = new ReadCounter();
    // Reads after the first three hang until the test opens the gate: breaking out while they
    // hang must not end the loop (it waits for them).
    let openGate!: () => void;
    const gate = new Promise<void>((resolve) => (openGate = resolve));
    let last: DiskChunk | undefined;
    let brokeOut!: () => void;
    const broke = new Promise<void>((resolve) => (brokeOut = resolve));
    const loop = (async () => {
      for await (const chunk of readChunks({ disks: counted(disks, counter, { delayTurns: 1, gate, gateAfter: 3 }), chunkSizeBytes, buffers: 4 })) {
        last?.release();
        last = chunk;
        if (chunk.index === 2) {
          brokeOut();
          break;
        }
      }
      return { started: counter.started, finished: counter.finished, inFlight: counter.inFlight };
    })();
    await broke;
    // A reader that did not wait would end once its hash workers stop; give it time to show
    // that. (Only how early a wrong reader is caught depends on this; a right one never ends here.)
    const endedEarly = await Promise.race([loop.then(() => true), new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 200))]);
    expect(endedEarly).toBe(false); // reads are under way, so the loop has not ended...
    expect(counter.inFlight).toBeGreaterThan(0);
    openGate();
    const atEnd = await loop;
    expect(atEnd.started).toBeGreaterThan(3);
    expect(atEnd.finished).toBe(atEnd.started); // ...and when it ends, every read is done
    expect(atEnd.inFlight).toBe(0);
    last!.release(); // giving a buffer back after the end starts no read
    await turns(20);
    expect(counter.started).toBe(atEnd.started);
  });

  it('throws a failed read in its place in the order, after the chunks before it (seed 10)', async () => {
    const { contents, files: disks } = await makeDisks(10);
    const counter = new ReadCounter();
    const boom = new Error('boom');
    const devices = counted(disks, counter, { delayTurns: 2 });
    devices[1] = new CountingDevice(disks[1]!, 1, counter, { delayTurns: 2, failAt: (offset) => (offset === 2 * chunkSizeBytes ? boom : undefined) });
    const seen: Array<{ disk: number; index: number }> = [];
    const err = await (async () => {
      for await (const chunk of readChunks({ disks: devices, chunkSizeBytes, buffers: 4 })) {
        seen.push({ disk: chunk.disk, index: chunk.index });
        chunk.release();
      }
    })().catch((e: unknown) => e);
    expect(err).toBe(boom);
    expect(seen).toEqual(expectedChunks(contents).slice(0, 6 + 2).map((c) => ({ disk: c.disk, index: c.index })));
    expect(counter.finished).toBe(counter.started);
  });

  it('throws what readError makes of a failed read, given the disk and offset (seed 11)', async () => {
    const { files: disks } = await makeDisks(11);
    const counter = new ReadCounter();
    const cause = Object.assign(new Error('EIO'), { code: 'EIO' });
    const devices = counted(disks, counter);
    devices[2] = new CountingDevice(disks[2]!, 2, counter, { failAt: (offset) => (offset === chunkSizeBytes ? cause : undefined) });
    const calls: unknown[][] = [];
    const readError = (e: unknown, disk: number, offset: number) => {
      calls.push([e, disk, offset]);
      return new FerryError('io', `disk ${disk} at ${offset}`, { cause: e });
    };
    let count = 0;
    const err = await (async () => {
      for await (const chunk of readChunks({ disks: devices, chunkSizeBytes, from: { disk: 1, chunk: 1 }, buffers: 2, readError })) {
        count++;
        chunk.release();
      }
    })().catch((e: unknown) => e);
    expect(isFerryError(err, 'io')).toBe(true);
    expect((err as FerryError).message).toBe(`disk 2 at ${chunkSizeBytes}`);
    expect((err as FerryError).cause).toBe(cause);
    expect(calls).toEqual([[cause, 2, chunkSizeBytes]]);
    expect(count).toBe(3 + 1); // disk 1 chunks 1-3, disk 2 chunk 0
    expect(counter.finished).toBe(counter.started);
  });

  it('stops with an aborted error once the signal fires, leaving no read running (seed 12)', async () => {
    const { files: disks } = await makeDisks(12);
    const counter = new ReadCounter();
    const controller = new AbortController();
    const buffers = 3;
    const indexes: number[] = [];
    const err = await (async () => {
      for await (const chunk of readChunks({ disks: counted(disks, counter, { delayTurns: 2 }), chunkSizeBytes, buffers, signal: controller.signal })) {
        indexes.push(chunk.index);
        chunk.release();
        if (chunk.index === 2) controller.abort(new Error('operator said stop'));
      }
    })().catch((e: unknown) => e);
    expect(isFerryError(err, 'aborted')).toBe(true);
    expect(indexes).toEqual([0, 1, 2]);
    expect(counter.finished).toBe(counter.started);
    expect(counter.started).toBeLessThanOrEqual(indexes.length + buffers);
  });

  it('yields nothing when the signal has already fired (seed 13)', async () => {
    const { files: disks } = await makeDisks(13);
    const controller = new AbortController();
    controller.abort();
    const counter = new ReadCounter();
    let count = 0;
    const err = await (async () => {
      for await (const chunk of readChunks({ disks: counted(disks, counter), chunkSizeBytes, buffers: 2, signal: controller.signal })) {
        count++;
        chunk.release();
      }
    })().catch((e: unknown) => e);
    expect(isFerryError(err, 'aborted')).toBe(true);
    expect(count).toBe(0);
    expect(counter.finished).toBe(counter.started);
  });
});
