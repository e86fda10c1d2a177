/**
 * The object-store interface every backend implements. Objects are small enough to hold in
 * memory (chunks are a few MiB, manifests and deltas are bounded); keys are relative,
 * slash-separated paths. Backends add no meaning to keys: the repository layout does that.
 */
import { FerryError } from '../core/index.js';

export interface ObjectInfo {
  sizeBytes: number;
}

export interface PutOptions {
  /**
   * One of many objects committed together (chunks before their manifest): the object may
   * become durable only at the next `flush()`. It is never seen torn, but after a crash
   * before that flush it may be missing.
   */
  batch?: boolean;
  /**
   * Called once the store no longer reads `data`, which may be well before `put` settles (a
   * `file:` store, while it waits for the disk to make the bytes durable): the caller may then
   * reuse its buffer. A backend may never call it; `data` is free once `put` settles anyway.
   */
  onDataReleased?: () => void;
}

export interface GetOptions {
  /**
   * Read the object into this buffer rather than one of its own (a restore, an applier reuse
   * a few buffers, shared with their hash workers): the result is then a view of it.
   */
  into?: Uint8Array;
  /**
   * An object larger than `into`: refused (code 'checksum-mismatch', naming both sizes), the
   * default, or read into a buffer of its own.
   */
  larger?: 'refuse' | 'own-buffer';
}

export interface ObjectStore {
  /** Where the store lives, for messages: `file:/srv/ferry` or `s3://bucket/prefix`. */
  readonly location: string;
  /**
   * Stores an object; when the promise resolves the object is whole, and durable unless
   * it was put as part of a batch (see PutOptions).
   */
  put(key: string, data: Uint8Array, signal?: AbortSignal, options?: PutOptions): Promise<void>;
  /** Makes every object put so far durable, batched ones included. */
  flush(signal?: AbortSignal): Promise<void>;
  /** Reads a whole object; a missing one fails with code 'not-found' naming the key. */
  get(key: string, signal?: AbortSignal, options?: GetOptions): Promise<Buffer>;
  /** Size of an object, or undefined if it does not exist. */
  stat(key: string, signal?: AbortSignal): Promise<ObjectInfo | undefined>;
  /** Keys that start with `prefix`, in no particular order. */
  list(prefix: string, signal?: AbortSignal): AsyncIterable<string>;
  /** Removes an object; removing a missing object is not an error. */
  delete(key: string, signal?: AbortSignal): Promise<void>;
  close(): Promise<void>;
}

const keyPattern = /^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/;

/** Keys are plain relative paths: no empty segments, no `.` or `..`, no leading slash. */
export function isValidKey(key: string): boolean {
  return keyPattern.test(key) && !key.split('/').some((part) => part === '.' || part === '..');
}

/** The error for an object that does not fit the buffer it is read into (GetOptions.into). */
export function tooLargeError(location: string, key: string, sizeBytes: number, into: Uint8Array): FerryError {
  return new FerryError('checksum-mismatch', `object ${key} in ${location} is ${sizeBytes} bytes, more than the ${into.byteLength} expected`);
}
