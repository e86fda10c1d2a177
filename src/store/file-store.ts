/**
 * `file:<dir>`: a store in a local directory. Writes are atomic and durable: a temp file in
 * the target folder, fdatasync, rename over the final name, fsync of the folder. A crash
 * leaves either the old state or the whole new object, never a torn one, and an object gets
 * its final name only once its bytes are durable: whoever finds the name (a reader, a resumed
 * copy that skips the chunks the store has) may rely on the bytes behind it.
 *
 * A batched put leaves the folder's fsync to the next `flush()`, which syncs each folder
 * touched once: a copy's chunks then cost one sync each instead of two, the folders' going
 * together at the end. `flush()` also syncs the folders of objects that `stat` found, since
 * their names may come from an interrupted process whose renames no fsync covered yet.
 *
 * The caller's buffer is released (PutOptions.onDataReleased) once written, before the sync.
 * The data path uses callback `fs` calls on raw fds (one small promise each) rather than
 * FileHandle, and creates each folder once.
 */
import { readdir, rm, stat } from 'node:fs/promises';
import { close, closeSync, constants, fdatasync, fstat, fstatSync, open, openSync, read, readSync, rename, type Stats } from 'node:fs';
import { dirname, join } from 'node:path';
import PQueue from 'p-queue';
import { randomBytes } from 'node:crypto';
import { FerryError, InlineIo, fullFileSystemHint, fsyncDirectory, throwIfAborted, writeFully, makeDirectory } from '../core/index.js';
import { isValidKey, tooLargeError, type GetOptions, type ObjectInfo, type ObjectStore, type PutOptions } from './object-store.js';

const tempMarker = '.tmp-';
/** Objects up to this size are read inline (see get). */
const inlineReadMaxBytes = 256 * 1024;

export interface FileStoreOptions {
  /**
   * Puts whose data may be synced (fdatasync) at once; default 4. Each sync holds one of
   * libuv's threadpool threads (4 unless UV_THREADPOOL_SIZE says more) until the disk
   * answers: the limit keeps syncs queued here rather than in front of other IO (a copy's
   * reads of its disk) in the threadpool's queue, now that a copy starts the next chunks
   * while the last ones sync.
   */
  syncConcurrency?: number;
}

export class FileStore implements ObjectStore {
  readonly location: string;
  /** Folders holding renames of batched puts that no fsync has covered yet. */
  private unsyncedFolders = new Set<string>();
  /** Folders this store has created or written in: no mkdir for them. */
  private readonly knownFolders = new Set<string>();
  private readonly syncs: PQueue;
  /** Small objects are read inline while that stays fast (see get). */
  private readonly inlineIo = new InlineIo();

  constructor(
    readonly root: string,
    options: FileStoreOptions = {},
  ) {
    this.location = `file:${root}`;
    this.syncs = new PQueue({ concurrency: options.syncConcurrency ?? 4 });
  }

  async put(key: string, data: Uint8Array, signal?: AbortSignal, options?: PutOptions): Promise<void> {
    throwIfAborted(signal);
    const path = this.pathOf(key);
    const folder = dirname(path);
    const temp = `${path}${tempMarker}${randomBytes(6).toString('hex')}`;
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      options?.onDataReleased?.();
    };
    let fd = -1;
    try {
      fd = await this.createTemp(folder, temp);
      await writeFully(fd, data, 0);
      release(); // the bytes are in the page cache: the caller may reuse its buffer while we sync
      await this.syncs.add(() => fsCall((cb) => fdatasync(fd, cb)));
      await fsCall((cb) => close(fd, cb));
      fd = -1;
      // Only now, with its bytes durable, does the object get its name: whoever finds the
      // name (a reader, a resumed copy that skips what the store has) finds it whole.
      await fsCall((cb) => rename(temp, path, cb));
      if (options?.batch) this.unsyncedFolders.add(folder);
      else await fsyncDirectory(folder);
    } catch (err) {
      // The put's error is the one to report.
      if (fd >= 0) await fsCall((cb) => close(fd, cb)).catch(() => {});
      await rm(temp, { force: true }).catch(() => {});
      throw this.translate(key, err);
    } finally {
      release();
    }
  }

  /**
   * A small object (a delta of a few writes) is read inline while that stays fast (see
   * InlineIo): a delta follower reads thousands of them, and four threadpool round trips
   * each (open, fstat, read, close) cost more than the calls themselves. Larger ones, and
   * all while inline calls are slow, go through the threadpool with raw fds.
   */
  async get(key: string, signal?: AbortSignal, options: GetOptions = {}): Promise<Buffer> {
    throwIfAborted(signal);
    const path = this.pathOf(key);
    return this.io(key, async () => {
      const small = this.inlineIo.tryInline(0, () => this.readSmallSync(key, path, options));
      if (small !== undefined) return small;
      const fd = await fsCall<number>((cb) => open(path, constants.O_RDONLY, cb));
      try {
        const { size } = await fsCall<Stats>((cb) => fstat(fd, cb));
        const target = this.target(key, size, options);
        for (let done = 0; done < size; ) {
          const bytesRead = await fsCall<number>((cb) => read(fd, target, done, size - done, done, cb));
          if (bytesRead === 0) throw this.shrank(key);
          done += bytesRead;
        }
        return target;
      } finally {
        close(fd, () => {});
      }
    });
  }

  /** The object if it is small (inlineReadMaxBytes), read with synchronous calls; else undefined. */
  private readSmallSync(key: string, path: string, options: GetOptions): Buffer | undefined {
    const fd = openSync(path, constants.O_RDONLY);
    try {
      const { size } = fstatSync(fd);
      if (size > inlineReadMaxBytes) return undefined;
      const target = this.target(key, size, options);
      for (let done = 0; done < size; ) {
        const bytesRead = readSync(fd, target, done, size - done, done);
        if (bytesRead === 0) throw this.shrank(key);
        done += bytesRead;
      }
      return target;
    } finally {
      closeSync(fd);
    }
  }

  /** Where an object of `size` bytes is read to (see GetOptions). */
  private target(key: string, size: number, { into, larger }: GetOptions): Buffer {
    if (into && size <= into.byteLength) return Buffer.from(into.buffer, into.byteOffset, size);
    if (into && larger !== 'own-buffer') throw tooLargeError(this.location, key, size, into);
    return Buffer.allocUnsafe(size);
  }

  private shrank(key: string): FerryError {
    return new FerryError('store-unavailable', `${this.location}: ${key}: shrank while being read`);
  }

  async stat(key: string): Promise<ObjectInfo | undefined> {
    try {
      const path = this.pathOf(key);
      const info = await this.io(key, () => stat(path));
      // Found, but maybe under a name that an interrupted process renamed into place and no
      // fsync of its folder has covered yet: a caller that relies on it (a resumed copy that
      // skips a chunk the store has) gets that folder synced by the next flush, before its
      // manifest. Its bytes are durable already: objects get their names only once they are.
      this.unsyncedFolders.add(dirname(path));
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
      await Promise.all(folders.map((folder) => fsyncDirectory(folder)));
    } catch (err) {
      for (const folder of folders) this.unsyncedFolders.add(folder); // not known durable
      throw this.translate('(flush)', err);
    }
  }

  async close(): Promise<void> {}

  /** Creates `temp` for writing (and its folder, the first time this store writes there). */
  private async createTemp(folder: string, temp: string): Promise<number> {
    const openTemp = () => fsCall<number>((cb) => open(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600, cb));
    if (this.knownFolders.has(folder)) {
      try {
        return await openTemp();
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        this.knownFolders.delete(folder); // removed behind our back: create it again
      }
    }
    await makeDirectory(folder).catch((err: unknown) => {
      throw new FerryError('store-unavailable', `${this.location}: cannot make folder ${folder}: ${(err as Error).message}`, { cause: err });
    });
    this.knownFolders.add(folder);
    return openTemp();
  }

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
    return new FerryError('store-unavailable', `${this.location}: ${key}: ${(err as Error).message}${fullFileSystemHint(err)}`, { cause: err });
  }
}

/** One callback-style fs call as a promise: one small promise, no FileHandle machinery. */
function fsCall<T = void>(start: (callback: (err: NodeJS.ErrnoException | null, result?: T) => void) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => start((err, result) => (err ? reject(err) : resolve(result as T))));
}
