/**
 * Background copy and restore, on both backends: byte-identical round trips of random
 * sparse images, deduplication, and refusal of corrupt, missing or unknown objects without
 * writing unverified data.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFile, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FileDevice, isFerryError, sha256Hex } from '../../src/core/index.js';
import { copyDisk, restoreDisk } from '../../src/migrate/index.js';
import { FileStore, Repository, S3Store, chunkKey, manifestKey, type ObjectStore } from '../../src/store/index.js';
import { CountingStore } from '../support/counting-store.js';
import { makeSparseImage, sha256File } from '../support/images.js';
import { startS3Server, type S3TestServer } from '../support/s3-server.js';
import { tempDir } from '../support/temp.js';

const MiB = 1024 * 1024;
const chunkSizeBytes = 1 * MiB; // small chunks: many of them in small images

let dir: { path: string; cleanup: () => Promise<void> };
let s3: S3TestServer;
beforeAll(async () => {
  dir = await tempDir();
  s3 = await startS3Server();
});
afterAll(async () => {
  await s3.stop();
  await dir.cleanup();
});

let storeCount = 0;
const backends: Record<string, () => ObjectStore> = {
  file: () => new FileStore(join(dir.path, `store-${++storeCount}`)),
  s3: () =>
    new S3Store({
      bucket: s3.bucket,
      prefix: `repo-${++storeCount}`,
      endpoint: s3.endpoint,
      accessKeyId: s3.accessKeyId,
      secretAccessKey: s3.secretAccessKey,
    }),
};

async function copyImage(store: ObjectStore, image: string) {
  const repo = await Repository.openOrInit(store, chunkSizeBytes);
  const disk = await FileDevice.open(image, { readOnly: true });
  try {
    return await copyDisk({ repo, disk, diskName: 'disk0' });
  } finally {
    await disk.close();
  }
}

for (const [backend, openStore] of Object.entries(backends)) {
  describe(`copy and restore through ${backend}:`, () => {
    // Sizes that are not a multiple of the chunk size, and one smaller than a chunk.
    const cases = [
      { seed: 1, sizeBytes: 40 * MiB },
      { seed: 2, sizeBytes: 37 * MiB + 512 * 7 },
      { seed: 3, sizeBytes: 300 * 1024 },
      { seed: 4, sizeBytes: 33 * MiB + 4096, dataFraction: 0.9 },
    ];
    for (const { seed, sizeBytes, dataFraction } of cases) {
      it(`round-trips a random sparse image byte for byte (seed ${seed}, ${sizeBytes} bytes)`, async () => {
        const image = join(dir.path, `${backend}-src-${seed}.img`);
        const dest = join(dir.path, `${backend}-dst-${seed}.img`);
        await makeSparseImage(image, sizeBytes, seed, dataFraction);
        const store = openStore();
        const { manifestId, stats } = await copyImage(store, image);
        expect(stats.chunksTotal).toBe(Math.ceil(sizeBytes / chunkSizeBytes));
        const repo = await Repository.open(store);
        const restored = await restoreDisk({ repo, manifestId, destPath: dest });
        expect(await sha256File(dest)).toBe(await sha256File(image));
        expect((await stat(dest)).size).toBe(sizeBytes);
        expect(restored.stats.chunksWritten + restored.stats.chunksZero + restored.stats.chunksUnchanged).toBe(stats.chunksTotal);
        await store.close();
      });
    }

    it('stores nothing twice: a second disk from the same template uploads no chunk', async () => {
      const image = join(dir.path, `${backend}-template.img`);
      await makeSparseImage(image, 24 * MiB, 11);
      const counting = new CountingStore(openStore());
      const first = await copyImage(counting, image);
      const firstChunkPuts = counting.puts.filter((k) => k.startsWith('chunks/'));
      expect(firstChunkPuts.length).toBe(first.stats.chunksUploaded);
      expect(new Set(firstChunkPuts).size).toBe(firstChunkPuts.length);
      const second = await copyImage(counting, image);
      expect(second.stats.chunksUploaded).toBe(0);
      expect(counting.puts.filter((k) => k.startsWith('chunks/')).length).toBe(firstChunkPuts.length);
      await counting.close();
    });

    it('skips all-zero chunks and leaves them as holes on restore', async () => {
      const image = join(dir.path, `${backend}-zeros.img`);
      const dest = join(dir.path, `${backend}-zeros-out.img`);
      await writeFile(image, Buffer.alloc(0));
      await truncate(image, 64 * MiB);
      const store = openStore();
      const { manifestId, stats, manifest } = await copyImage(store, image);
      expect(stats.chunksZero).toBe(64);
      expect(manifest.chunks).toEqual([]);
      await restoreDisk({ repo: await Repository.open(store), manifestId, destPath: dest });
      expect((await stat(dest)).blocks).toBe(0);
      expect(await sha256File(dest)).toBe(await sha256File(image));
      await store.close();
    });
  });
}

it('a restore that finds the partial file of an earlier run keeps what is right in it and mends what is not', async () => {
  const image = join(dir.path, 'resume-src.img');
  const dest = join(dir.path, 'resume-out.img');
  await makeSparseImage(image, 8 * MiB, 31, 0.5);
  const store = new FileStore(join(dir.path, 'resume-store'));
  const { manifestId, manifest } = await copyImage(store, image);
  const zeroChunk = [...Array(8).keys()].find((i) => !manifest.chunks.some(([c]) => c === i))!;
  expect(zeroChunk).toBeDefined();
  // Left by an interrupted run: every chunk written but one, which holds what must be zeros.
  const partial = await readFile(image);
  partial.fill(0xee, zeroChunk * chunkSizeBytes, (zeroChunk + 1) * chunkSizeBytes);
  await writeFile(`${dest}.ferry-partial`, partial);
  const { stats } = await restoreDisk({ repo: await Repository.open(store), manifestId, destPath: dest });
  expect(stats.chunksUnchanged).toBe(manifest.chunks.length);
  expect(stats.bytesDownloaded).toBe(0);
  expect(await sha256File(dest)).toBe(await sha256File(image));
  await store.close();
});

describe('refusing bad store contents (file backend, where objects can be edited in place)', () => {
  let storeDir: string;
  let image: string;
  let manifestId: string;
  let victim: string;

  beforeAll(async () => {
    storeDir = join(dir.path, 'bad-store');
    image = join(dir.path, 'bad-src.img');
    await makeSparseImage(image, 20 * MiB, 21, 0.9);
    const result = await copyImage(new FileStore(storeDir), image);
    manifestId = result.manifestId;
    victim = result.manifest.chunks[Math.floor(result.manifest.chunks.length / 2)]![1];
  });

  /** Bytes of `dest` in every chunk slot that holds `hash` in the manifest. */
  async function slotsOf(dest: string, hash: string): Promise<Buffer[]> {
    const repo = await Repository.open(new FileStore(storeDir));
    const { manifest } = await repo.getManifest(manifestId);
    const data = await readFile(dest);
    return manifest.chunks.filter(([, h]) => h === hash).map(([i]) => data.subarray(i * chunkSizeBytes, (i + 1) * chunkSizeBytes));
  }

  it('a flipped byte in a stored chunk fails naming the chunk, and its bytes are never written', async () => {
    const path = join(storeDir, chunkKey(victim));
    const original = await readFile(path);
    const corrupt = Buffer.from(original);
    corrupt.writeUInt8(corrupt.readUInt8(12345) ^ 0x01, 12345);
    await writeFile(path, corrupt);
    const dest = join(dir.path, 'flipped-out.img');
    const err = await restoreDisk({ repo: await Repository.open(new FileStore(storeDir)), manifestId, destPath: dest }).catch((e: unknown) => e);
    expect(isFerryError(err, 'checksum-mismatch')).toBe(true);
    expect(String(err)).toContain(chunkKey(victim));
    // The destination was never created; the partial file holds nothing of the corrupt chunk.
    await expect(stat(dest)).rejects.toMatchObject({ code: 'ENOENT' });
    for (const slot of await slotsOf(`${dest}.ferry-partial`, victim)) {
      expect(slot.equals(Buffer.alloc(slot.length))).toBe(true);
      expect(sha256Hex(slot)).not.toBe(sha256Hex(corrupt));
    }
    await writeFile(path, original);
  });

  it('a deleted chunk fails naming the chunk', async () => {
    const path = join(storeDir, chunkKey(victim));
    const original = await readFile(path);
    await rm(path);
    const dest = join(dir.path, 'deleted-out.img');
    const err = await restoreDisk({ repo: await Repository.open(new FileStore(storeDir)), manifestId, destPath: dest }).catch((e: unknown) => e);
    expect(isFerryError(err, 'not-found')).toBe(true);
    expect(String(err)).toContain(chunkKey(victim));
    await expect(stat(dest)).rejects.toMatchObject({ code: 'ENOENT' });
    await writeFile(path, original);
  });

  it('a manifest of an unknown version fails naming the manifest, before anything is written', async () => {
    const store = new FileStore(storeDir);
    const repo = await Repository.open(store);
    const { manifest } = await repo.getManifest(manifestId);
    const future = Buffer.from(`${JSON.stringify({ ...manifest, version: 99 })}\n`);
    const futureId = sha256Hex(future);
    await store.put(manifestKey(futureId), future);
    const dest = join(dir.path, 'future-out.img');
    const err = await restoreDisk({ repo, manifestId: futureId, destPath: dest }).catch((e: unknown) => e);
    expect(isFerryError(err, 'unsupported-version')).toBe(true);
    expect(String(err)).toContain(manifestKey(futureId));
    expect(String(err)).toContain('99');
    await expect(stat(dest)).rejects.toMatchObject({ code: 'ENOENT' });
    await expect(stat(`${dest}.ferry-partial`)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('a manifest whose bytes no longer match its name fails as corrupt', async () => {
    const path = join(storeDir, manifestKey(manifestId));
    const original = await readFile(path);
    await writeFile(path, original.toString().replace('"disk0"', '"disk1"'));
    const err = await Repository.open(new FileStore(storeDir)).then((r) => r.getManifest(manifestId)).catch((e: unknown) => e);
    expect(isFerryError(err, 'checksum-mismatch')).toBe(true);
    expect(String(err)).toContain(manifestKey(manifestId));
    await writeFile(path, original);
  });

  it('a destination of the wrong size is refused, and left untouched', async () => {
    const dest = join(dir.path, 'wrong-size.img');
    const content = Buffer.alloc(10 * MiB, 7);
    await writeFile(dest, content);
    const err = await restoreDisk({ repo: await Repository.open(new FileStore(storeDir)), manifestId, destPath: dest }).catch((e: unknown) => e);
    expect(isFerryError(err, 'bad-input')).toBe(true);
    expect(String(err)).toContain(String(20 * MiB));
    expect((await readFile(dest)).equals(content)).toBe(true);
  });

  it('an existing replica is brought up to date, rewriting only the chunks that differ', async () => {
    const dest = join(dir.path, 'stale-replica.img');
    const data = await readFile(image);
    data.writeUInt8(data.readUInt8(3 * chunkSizeBytes + 10) ^ 0xff, 3 * chunkSizeBytes + 10); // one stale chunk
    data.fill(9, 15 * chunkSizeBytes, 15 * chunkSizeBytes + 100); // and another
    await writeFile(dest, data);
    const { stats } = await restoreDisk({ repo: await Repository.open(new FileStore(storeDir)), manifestId, destPath: dest });
    expect(await sha256File(dest)).toBe(await sha256File(image));
    expect(stats.chunksWritten + stats.chunksZero).toBeGreaterThanOrEqual(2);
    expect(stats.chunksWritten).toBeLessThanOrEqual(2);
  });
});
