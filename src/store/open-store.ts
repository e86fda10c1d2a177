/**
 * Turns a store URL into a backend: `file:<dir>` (also `file:///abs/dir`) or
 * `s3://bucket[/prefix]`, the latter retrying transient failures (RetryingStore). Credentials and endpoint are passed in by the caller (the CLI
 * reads them from flags and the usual AWS_* variables).
 */
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { badInput } from '../core/index.js';
import { FileStore } from './file-store.js';
import type { ObjectStore } from './object-store.js';
import { RetryingStore, type RetryPolicy } from './retrying-store.js';
import { S3Store, type S3StoreOptions } from './s3-store.js';

export type S3Settings = Omit<S3StoreOptions, 'bucket' | 'prefix'> & {
  /** How long its requests are retried while the store fails (network stores only). */
  retry?: RetryPolicy;
};

export function openStore(url: string, s3: S3Settings = {}): ObjectStore {
  if (url.startsWith('file://')) return new FileStore(fileURLToPath(url));
  if (url.startsWith('file:')) {
    const path = url.slice('file:'.length);
    if (path === '') throw badInput('store', url, 'file:<directory>');
    return new FileStore(resolve(path));
  }
  const s3Match = /^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:\/(.*?))?\/?$/.exec(url);
  if (s3Match) {
    const { retry, ...options } = s3;
    // Over the network, transient failures are retried (retrying-store.ts).
    return new RetryingStore(new S3Store({ ...options, bucket: s3Match[1]!, prefix: s3Match[2] ?? '' }), retry);
  }
  throw badInput('store', url, 'file:<directory> or s3://bucket[/prefix]');
}
