/**
 * A store that rides through a flaky network store: every request that fails transiently
 * (a 5xx, SlowDown, a reset connection, a request that got no reply within its deadline:
 * the backend says so, FerryError.transient) is tried again after an exponential backoff with full jitter (200 ms
 * doubling to 30 s), for as long as `retryForMs` allows since the first failure of that
 * request; only then does the failure reach the caller. Every retry is reported through
 * `onRetry`, so long work can say why it is slow. Other errors (not found, no credentials,
 * access denied, an abort) pass at once.
 *
 * A listing is tried again from its start as long as it has yielded nothing; after that, a
 * failure ends it (a caller that lists retries its whole pass).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { FerryError, asFerryError, throwIfAborted } from '../core/index.js';
import type { GetOptions, ObjectInfo, ObjectStore, PutOptions } from './object-store.js';

export interface RetryPolicy {
  /** How long one request may keep being retried, from its first failure (default 10 min). */
  retryForMs?: number;
  /** Told of each retry: what failed, the attempt that failed, the wait before the next. */
  onRetry?: (retry: { what: string; error: FerryError; attempt: number; delayMs: number }) => void;
}

export const defaultRetryForMs = 10 * 60_000;
const firstDelayMs = 200;
const maxDelayMs = 30_000;

export class RetryingStore implements ObjectStore {
  readonly location: string;
  private readonly retryForMs: number;

  constructor(
    private readonly inner: ObjectStore,
    private readonly policy: RetryPolicy = {},
  ) {
    this.location = inner.location;
    this.retryForMs = policy.retryForMs ?? defaultRetryForMs;
  }

  put(key: string, data: Uint8Array, signal?: AbortSignal, options?: PutOptions): Promise<void> {
    return this.retry(`put ${key}`, signal, () => this.inner.put(key, data, signal, options));
  }

  flush(signal?: AbortSignal): Promise<void> {
    return this.retry('flush', signal, () => this.inner.flush(signal));
  }

  get(key: string, signal?: AbortSignal, options?: GetOptions): Promise<Buffer> {
    return this.retry(`get ${key}`, signal, () => this.inner.get(key, signal, options));
  }

  stat(key: string, signal?: AbortSignal): Promise<ObjectInfo | undefined> {
    return this.retry(`stat ${key}`, signal, () => this.inner.stat(key, signal));
  }

  delete(key: string, signal?: AbortSignal): Promise<void> {
    return this.retry(`delete ${key}`, signal, () => this.inner.delete(key, signal));
  }

  async *list(prefix: string, signal?: AbortSignal): AsyncIterable<string> {
    let started: number | undefined;
    for (let attempt = 1; ; attempt++) {
      let yielded = false;
      try {
        for await (const key of this.inner.list(prefix, signal)) {
          yielded = true;
          yield key;
        }
        return;
      } catch (err) {
        if (yielded) throw err;
        started ??= Date.now();
        await this.backOff(`list ${prefix || '(all)'}`, err, attempt, started, signal);
      }
    }
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  private async retry<T>(what: string, signal: AbortSignal | undefined, request: () => Promise<T>): Promise<T> {
    let started: number | undefined;
    for (let attempt = 1; ; attempt++) {
      try {
        return await request();
      } catch (err) {
        started ??= Date.now();
        await this.backOff(what, err, attempt, started, signal);
      }
    }
  }

  /** Waits before the next attempt, or rethrows: a failure that is not transient, or the time is up. */
  private async backOff(what: string, err: unknown, attempt: number, started: number, signal?: AbortSignal): Promise<void> {
    const error = asFerryError(err);
    if (!error.transient || signal?.aborted) throw err;
    const left = started + this.retryForMs - Date.now();
    if (left <= 0) {
      throw new FerryError('store-unavailable', `${error.message} (gave up after ${attempt} attempts in ${Math.round((Date.now() - started) / 1000)} s)`, { cause: err });
    }
    // Full jitter: a random wait up to the doubled cap, so many clients do not retry in step.
    const delayMs = Math.min(left, Math.round(Math.random() * Math.min(maxDelayMs, firstDelayMs * 2 ** (attempt - 1))));
    this.policy.onRetry?.({ what, error, attempt, delayMs });
    await sleep(delayMs, undefined, { signal }).catch(() => throwIfAborted(signal));
  }
}
