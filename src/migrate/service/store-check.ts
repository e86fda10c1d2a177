/**
 * A store's connectivity check: open it and its ferry repository, creating the repository
 * if the store is empty (which also proves the service may write there). The outcome is a
 * result, not an error: an unreachable store is something to report.
 */
import { mkdir, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { FerryError, asFerryError, formatBytes } from '../../core/index.js';
import { FileStore, Repository, openStore, type ObjectStore, type S3Settings } from '../../store/index.js';
import type { StoreCheck } from './records.js';

/** Store requests have no timeouts of their own; a check gives up after this long. */
export const defaultStoreCheckTimeoutMs = 15_000;

export async function checkStore(url: string, s3: S3Settings = {}, timeoutMs = defaultStoreCheckTimeoutMs): Promise<StoreCheck> {
  const atMs = Date.now();
  let timer: NodeJS.Timeout | undefined;
  let store;
  try {
    store = openStore(url, s3);
    const opened = store;
    const giveUp = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer from ${opened.location} within ${timeoutMs / 1000} s`)), timeoutMs);
    });
    const { repository, initialized } = await Promise.race([openRepository(opened), giveUp]);
    const { id, chunkSizeBytes } = repository.config;
    return {
      atMs,
      reachable: true,
      message: `${initialized ? 'made a new' : 'found the'} ferry repository ${id} (chunks of ${formatBytes(chunkSizeBytes)}) in ${opened.location}`,
      repositoryId: id,
      chunkSizeBytes,
      initialized,
    };
  } catch (err) {
    const error = asFerryError(err, 'store-unavailable');
    return { atMs, reachable: false, code: error.code, message: error.message };
  } finally {
    clearTimeout(timer);
    await store?.close().catch(() => {});
  }
}

async function openRepository(store: ObjectStore): Promise<{ repository: Repository; initialized: boolean }> {
  if (store instanceof FileStore) await makeDirectory(store.root);
  const initialized = (await store.stat('config')) === undefined;
  return { repository: initialized ? await Repository.openOrInit(store) : await Repository.open(store), initialized };
}

/**
 * Makes a `file:` store's directory one level at a time. A recursive mkdir where the
 * filesystem refuses to create anything (under /proc) never returns under Node 20: libuv
 * retries it forever on a threadpool thread. Made here, a path like that fails at once.
 */
async function makeDirectory(root: string): Promise<void> {
  const missing: string[] = [];
  for (let dir = root; !(await stat(dir).then(() => true, () => false)); dir = dirname(dir)) {
    missing.unshift(dir);
    if (dirname(dir) === dir) break;
  }
  for (const dir of missing) {
    try {
      await mkdir(dir, { mode: 0o755 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') continue;
      throw new FerryError('store-unavailable', `cannot make the store's directory ${dir}: ${(err as Error).message}`, { cause: err });
    }
  }
}
