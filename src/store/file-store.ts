/**
 * `file:<dir>`: a store in a local directory. Writes are atomic and durable: a temp file in
 * the target folder, fsync, rename over the final name, fsync of the folder. A crash leaves
 * either the old state or the whole new object, never a torn one. A batched put leaves the
 * folder's fsync to the next `flush()`, which syncs each folder touched once: a copy's
 * chunks then cost one sync each instead of two, the folders' going together at the end.
 */
import { mkdir, open, readFile, readdir, rename, rm, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { FerryError, throwIfAborted } from '../core/index.js';
import { isValidKey, type ObjectInfo, type ObjectStore, type PutOptions } from './object-store.js';

const tempMarker = '.tmp-';

export class FileStore implements ObjectStore {
  readonly location: string;
  /** Folders holding renames of batched puts that no fsync has covered yet. */
  private unsyncedFolders = new Set<string>();

  constructor(readonly root: string) {
    this.location = `file:${root}`;
  }

  async put(key: string, data: Uint8Array, signal?: AbortSignal, options?: PutOptions): Promise<void> {
    throwIfAborted(signal);
    const path = this.pathOf(key);
    const folder = dirname(path);
    const temp = `${path}${tempMarker}${randomBytes(6).toString('hex')}`;
    await this.io(key, async () => {
      await mkdir(folder, { recursive: true });
      const handle = await open(temp, 'wx', 0o644);
      try {
        // One write call per object (writeFile would cut it into 512 KiB pieces).
        for (let done = 0; done < data.byteLength; ) done += (await handle.write(data, done)).bytesWritten;
        await handle.datasync();
      } finally {
        await handle.close();
      }
      await rename(temp, path);
      if (options?.batch) this.unsyncedFolders.add(folder);
      else await syncFolder(folder);
    }).catch(async (err) => {
      await rm(temp, { force: true }).catch(() => {}); // the put's error is the one to report
      throw err;
    });
  }

  async get(key: string, signal?: AbortSignal): Promise<Buffer> {
    throwIfAborted(signal);
    return this.io(key, () => readFile(this.pathOf(key)));
  }

  async stat(key: string): Promise<ObjectInfo | undefined> {
    try {
      const info = await this.io(key, () => stat(this.pathOf(key)));
      return { sizeBytes: info.size };
    } catch (err) {
      if (err instanceof FerryError && err.code === 'not-found') return undefined;
      throw err;
    }
  }

  async *list(prefix: string, signal?: AbortSignal): AsyncIterable<string> {
    // Walk only the folder that holds the prefix, then filter by the rest of it.
    const cut = prefix.lastIndexOf('/');
    const base = cut < 0 ? '' : prefix.slice(0, cut);
    yield* this.walk(base, prefix, signal);
  }

  async delete(key: string): Promise<void> {
    await this.io(key, () => rm(this.pathOf(key), { force: true }));
  }

  async flush(signal?: AbortSignal): Promise<void> {
    throwIfAborted(signal);
    const folders = [...this.unsyncedFolders];
    this.unsyncedFolders = new Set();
    try {
      await Promise.all(folders.map((folder) => syncFolder(folder)));
    } catch (err) {
      for (const folder of folders) this.unsyncedFolders.add(folder); // not known durable
      throw this.translate('(flush)', err);
    }
  }

  async close(): Promise<void> {}

  private async *walk(folder: string, prefix: string, signal?: AbortSignal): AsyncIterable<string> {
    throwIfAborted(signal);
    let entries;
    try {
      entries = await readdir(join(this.root, folder), { withFileTypes: true });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' && folder !== '') return;
      throw this.translate(folder || '.', err);
    }
    for (const entry of entries) {
      const key = folder === '' ? entry.name : `${folder}/${entry.name}`;
      if (entry.isDirectory()) {
        if (prefix.startsWith(`${key}/`) || key.startsWith(prefix)) yield* this.walk(key, prefix, signal);
      } else if (entry.isFile() && key.startsWith(prefix) && !entry.name.includes(tempMarker)) {
        yield key;
      }
    }
  }

  private pathOf(key: string): string {
    if (!isValidKey(key)) throw new FerryError('bad-input', `object key ${JSON.stringify(key)} is not a valid key`);
    return join(this.root, key);
  }

  private async io<T>(key: string, action: () => Promise<T>): Promise<T> {
    try {
      return await action();
    } catch (err) {
      throw this.translate(key, err);
    }
  }

  private translate(key: string, err: unknown): FerryError {
    if (err instanceof FerryError) return err;
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return new FerryError('not-found', `object ${key} not found in ${this.location}`, { cause: err });
    return new FerryError('store-unavailable', `${this.location}: ${key}: ${(err as Error).message}`, { cause: err });
  }
}

async function syncFolder(folder: string): Promise<void> {
  const handle = await open(folder, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
