/**
 * Durability and resume of a copy into a file: store, and the early release of chunk
 * buffers: an object gets its name only once its bytes are durable, leftovers of an
 * interrupted put are never trusted, chunks a re-run skips get their folders synced before
 * the manifest, and a copy whose store holds on to puts after taking their bytes stays
 * correct and within its buffer pool.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { FileDevice, sha256Hex } from '../../src/core/index.js';
import { copyDisk, restoreDisk } from '../../src/migrate/index.js';
import { FileStore, Repository, chunkKey, type ObjectStore, type PutOptions } from '../../src/store/index.js';
import { CountingStore } from '../support/counting-store.js';
import { makeSparseImage, sha256File } from '../support/images.js';
import { tempDir } from '../support/temp.js';

const MiB = 1024 * 1024;
const chunkSizeBytes = 1 * MiB;

let dir: { path: string; cleanup: () => Promise<void> };
beforeAll(async () => {
  dir = await tempDir();
});
afterAll(async () => {
  await dir.cleanup();
});

async function copyInto(store: ObjectStore, image: string, concurrency?: number) {
  const repo = await Repository.openOrInit(store, chunkSizeBytes);
  const disk = await FileDevice.open(image, { readOnly: true });
  try {
    return await copyDisk({ repo, disk, diskName: 'disk0', concurrency });
  } finally {
    await disk.close();
  }
}

/** A FileStore that records the order of its puts' steps, and which folders its flushes cover. */
class WatchedFileStore extends FileStore {
  readonly events: string[] = [];

  override async put(key: string, data: Uint8Array, signal?: AbortSignal, options?: PutOptions): Promise<void> {
    await super.put(key, data, signal, {
      ...options,
      onDataReleased: () => {
        this.events.push(`released ${key}`);
        options?.onDataReleased?.();
      },
    });
    this.events.push(`settled ${key}`);
  }

  /** Folders each flush synced. */
  readonly flushed: string[][] = [];

  override async flush(signal?: AbortSignal): Promise<void> {
    const folders = this.pendingFolders();
    await super.flush(signal);
    this.flushed.push(folders);
  }

  /** Folders the next flush will fsync. */
  pendingFolders(): string[] {
    return [...(this as unknown as { unsyncedFolders: Set<string> }).unsyncedFolders].sort();
  }
}

describe('file: store durability', () => {
  it('releases the caller\u2019s bytes once written, before the put settles, exactly once', async () => {
    const store = new WatchedFileStore(join(dir.path, 'release'));
    const data = randomBytes(3 * MiB);
    let calls = 0;
    await store.put('objects/a', data, undefined, { batch: true, onDataReleased: () => calls++ });
    expect(calls).toBe(1);
    expect(store.events).toEqual(['released objects/a', 'settled objects/a']);
    expect((await store.get('objects/a')).equals(data)).toBe(true);
  });

  it('a put that fails releases the bytes, leaves no name and no temp file', async () => {
    const root = join(dir.path, 'failing');
    const store = new FileStore(root);
    await mkdir(join(root, 'objects'), { recursive: true });
    await writeFile(join(root, 'objects', 'blocker'), 'a file where a folder should be');
    let calls = 0;
    const err = await store.put('objects/blocker/x', Buffer.from('x'), undefined, { onDataReleased: () => calls++ }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect(calls).toBe(1);
    expect(await readdir(join(root, 'objects'))).toEqual(['blocker']);
  });

  it('a temp file left by an interrupted put is not trusted: the re-run uploads the chunk whole', async () => {
    const image = join(dir.path, 'resume.img');
    await makeSparseImage(image, 12 * MiB, 31, 0.8);
    const first = await copyInto(new FileStore(join(dir.path, 'resume-ref')), image);
    const victim = first.manifest.chunks[0]![1];

    // A store that crashed while writing `victim`: a torn temp file, no name.
    const storeDir = join(dir.path, 'resume-store');
    await Repository.openOrInit(new FileStore(storeDir), chunkSizeBytes);
    const tempPath = `${join(storeDir, chunkKey(victim))}.tmp-0123456789ab`;
    await mkdir(dirname(tempPath), { recursive: true });
    await writeFile(tempPath, Buffer.alloc(1000, 7));

    const counting = new CountingStore(new FileStore(storeDir));
    const second = await copyInto(counting, image);
    expect(counting.puts).toContain(chunkKey(victim));
    expect(second.stats.chunksUploaded).toBe(first.stats.chunksUploaded);
    const repo = await Repository.open(new FileStore(storeDir));
    expect(sha256Hex(await repo.getChunk(victim))).toBe(victim);
    const dest = join(dir.path, 'resume-restored.img');
    await restoreDisk({ repo, manifestId: second.manifestId, destPath: dest });
    expect(await sha256File(dest)).toBe(await sha256File(image));
  });

  it('a re-run that skips chunks the store has syncs their folders before writing its manifest', async () => {
    const image = join(dir.path, 'skip.img');
    await makeSparseImage(image, 10 * MiB, 32, 0.9);
    const storeDir = join(dir.path, 'skip-store');
    const first = await copyInto(new FileStore(storeDir), image);

    // As if the first copy's process had died after its renames, before its folder syncs:
    // the second one finds every chunk, uploads none, and must sync their folders itself.
    const store = new WatchedFileStore(storeDir);
    const repo = await Repository.open(store);
    for (const [, hash] of first.manifest.chunks) expect(await repo.hasChunk(hash)).toBe(true);
    const folders = [...new Set(first.manifest.chunks.map(([, hash]) => dirname(join(storeDir, chunkKey(hash)))))].sort();
    for (const folder of folders) expect(store.pendingFolders()).toContain(folder);
    await store.flush();
    expect(store.pendingFolders()).toEqual([]);

    const watched = new WatchedFileStore(storeDir);
    const second = await copyInto(watched, image);
    expect(second.stats.chunksUploaded).toBe(0);
    expect(second.manifest.chunks).toEqual(first.manifest.chunks);
    expect(watched.flushed.length).toBeGreaterThan(0); // the flush before the manifest
    for (const folder of folders) expect(watched.flushed[0]).toContain(folder);
  });
});

/** A store that takes a put's bytes (a copy), releases the caller's buffer, and settles later. */
class SlowSettlingStore extends FileStore {
  heldBack = 0;
  mostHeldBack = 0;

  override async put(key: string, data: Uint8Array, signal?: AbortSignal, options?: PutOptions): Promise<void> {
    const copy = Buffer.from(data);
    options?.onDataReleased?.();
    this.heldBack++;
    this.mostHeldBack = Math.max(this.mostHeldBack, this.heldBack);
    await new Promise((resolve) => setTimeout(resolve, 15));
    this.heldBack--;
    await super.put(key, copy, signal, options);
  }
}

describe('copy with a store that settles puts after taking their bytes', () => {
  it('copies byte for byte, with more chunks under way than buffers, bounded by 4 x concurrency', async () => {
    const image = join(dir.path, 'slow.img');
    await makeSparseImage(image, 24 * MiB, 33, 1);
    const store = new SlowSettlingStore(join(dir.path, 'slow-store'));
    const result = await copyInto(store, image, 2);
    expect(store.mostHeldBack).toBeGreaterThan(2);
    expect(store.mostHeldBack).toBeLessThanOrEqual(8);
    const dest = join(dir.path, 'slow-restored.img');
    await restoreDisk({ repo: await Repository.open(new FileStore(join(dir.path, 'slow-store'))), manifestId: result.manifestId, destPath: dest });
    expect(await sha256File(dest)).toBe(await sha256File(image));
  });
});
