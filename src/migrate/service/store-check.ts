/**
 * A store's connectivity check: open it and its ferry repository, creating the repository
 * if the store is empty (which also proves the service may write there). The outcome is a
 * result, not an error: an unreachable store is something to report.
 */
import { FerryError, asFerryError, formatBytes, makeDirectory } from '../../core/index.js';
import { FileStore, Repository, openStore, type ObjectStore, type S3Settings } from '../../store/index.js';
import type { StoreCheck } from './records.js';

/** A check tries each request once (it reports, it does not ride through) and gives up after this long in all. */
export const defaultStoreCheckTimeoutMs = 15_000;

export async function checkStore(url: string, s3: S3Settings = {}, timeoutMs = defaultStoreCheckTimeoutMs): Promise<StoreCheck> {
  const atMs = Date.now();
  let timer: NodeJS.Timeout | undefined;
  let store;
  try {
    store = openStore(url, { ...s3, retry: { retryForMs: 0 } });
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
  if (store instanceof FileStore) {
    await makeDirectory(store.root).catch((err: unknown) => {
      throw new FerryError('store-unavailable', `cannot make the store's directory ${store.root}: ${(err as Error).message}`, { cause: err });
    });
  }
  const initialized = (await store.stat('config')) === undefined;
  return { repository: initialized ? await Repository.openOrInit(store) : await Repository.open(store), initialized };
}
