/**
 * `s3://bucket/prefix`: a store in any S3-compatible service (AWS, Ceph radosgw, MinIO,
 * s3rver). Uploads go through lib-storage, which switches to multipart for large objects.
 */
import type { S3Client, S3ClientConfig } from '@aws-sdk/client-s3';
import { FerryError, throwIfAborted } from '../core/index.js';
import type { Readable } from 'node:stream';
import { isValidKey, tooLargeError, type GetOptions, type ObjectInfo, type ObjectStore } from './object-store.js';

export interface S3StoreOptions {
  bucket: string;
  /** Key prefix inside the bucket, without leading or trailing slash ('' for none). */
  prefix: string;
  /** Endpoint of an S3-compatible service, e.g. http://127.0.0.1:9000; AWS if omitted. */
  endpoint?: string;
  region?: string;
  accessKeyId?: string;
  secretAccessKey?: string;
  sessionToken?: string;
  /** A named profile of the shared AWS config files (~/.aws/credentials), as AWS_PROFILE. */
  profile?: string;
  /**
   * How long a request may go without completing before it counts as failed (a stalled
   * connection): this, plus a second per 256 KiB it uploads (default 30 s).
   */
  timeoutMs?: number;
}

export const defaultS3TimeoutMs = 30_000;
/** Objects up to this size go up in one PUT; larger ones in parts of this size. */
const partBytes = 16 * 1024 * 1024;

/** What an upload's deadline adds to the timeout for its bytes: 1 s per 256 KiB begun. */
function uploadAllowanceMs(bytes: number): number {
  return Math.ceil(bytes / (256 * 1024)) * 1000;
}

type Sdk = typeof import('@aws-sdk/client-s3');
type Storage = typeof import('@aws-sdk/lib-storage');

export class S3Store implements ObjectStore {
  readonly location: string;
  private readonly config: S3ClientConfig;
  /** The AWS SDK takes a quarter of a second to load: only a store that is used loads it. */
  private sdk: Promise<{ s3: Sdk; storage: Storage; client: S3Client }> | undefined;

  constructor(private readonly options: S3StoreOptions) {
    this.location = `s3://${options.bucket}${options.prefix ? `/${options.prefix}` : ''}`;
    const config: S3ClientConfig = {
      region: options.region ?? 'us-east-1',
      forcePathStyle: true,
      // With the SDK's defaults, streamed uploads carry aws-chunked framing that some
      // S3-compatible servers store as data (s3rver) or refuse (radosgw).
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      // One attempt per request: retrying-store.ts retries, with its own backoff and reporting.
      maxAttempts: 1,
      // A connection silent for longer than any request's deadline is closed, whichever
      // request it carries: a stalled request that no deadline's signal reaches (a part of a
      // multipart upload) gives back its socket all the same.
      requestHandler: { socketTimeout: (options.timeoutMs ?? defaultS3TimeoutMs) + uploadAllowanceMs(partBytes) },
    };
    if (options.endpoint) config.endpoint = options.endpoint;
    if (options.profile) config.profile = options.profile;
    if (options.accessKeyId && options.secretAccessKey) {
      config.credentials = {
        accessKeyId: options.accessKeyId,
        secretAccessKey: options.secretAccessKey,
        ...(options.sessionToken ? { sessionToken: options.sessionToken } : {}),
      };
    }
    this.config = config;
  }

  private connect(): Promise<{ s3: Sdk; storage: Storage; client: S3Client }> {
    this.sdk ??= Promise.all([import('@aws-sdk/client-s3'), import('@aws-sdk/lib-storage')]).then(([s3, storage]) => ({
      s3,
      storage,
      client: new s3.S3Client(this.config),
    }));
    return this.sdk;
  }

  async put(key: string, data: Uint8Array, signal?: AbortSignal): Promise<void> {
    throwIfAborted(signal);
    const { s3, storage, client } = await this.connect();
    await this.request(key, uploadAllowanceMs(data.byteLength), signal, async (abortSignal) => {
      const params = { Bucket: this.options.bucket, Key: this.keyOf(key), Body: data, ContentLength: data.byteLength };
      // Up to a part's size, one PUT sent under the deadline's signal, which destroys its
      // connection when it fires. (lib-storage's Upload sends that PUT without the signal: a
      // stalled PUT it gave up on kept its socket, and enough of them filled the client's pool.)
      if (data.byteLength <= partBytes) {
        await client.send(new s3.PutObjectCommand(params), { abortSignal });
        return;
      }
      const upload = new storage.Upload({ client, params, queueSize: 4, partSize: partBytes });
      const abort = () => void upload.abort();
      abortSignal.addEventListener('abort', abort, { once: true });
      try {
        await upload.done();
      } finally {
        abortSignal.removeEventListener('abort', abort);
      }
    });
  }

  /** An S3 object is durable once its PUT succeeds: nothing to flush. */
  async flush(): Promise<void> {}

  async get(key: string, signal?: AbortSignal, options: GetOptions = {}): Promise<Buffer> {
    const { s3, client } = await this.connect();
    const { into } = options;
    // Objects are chunks and deltas of a few MiB: the deadline covers reading the body too.
    return this.request(key, this.timeoutMs, signal, async (abortSignal) => {
      const reply = await client.send(new s3.GetObjectCommand({ Bucket: this.options.bucket, Key: this.keyOf(key) }), { abortSignal });
      if (!reply.Body) throw new FerryError('store-unavailable', `${this.location}: ${key}: empty response body`);
      const body = reply.Body as Readable;
      // A body that stalls half-way is given up at the deadline: its connection goes with it.
      abortSignal.addEventListener('abort', () => body.destroy(), { once: true });
      const length = reply.ContentLength;
      const ownBuffer = options.larger === 'own-buffer';
      // Of unknown length, it is read into `into` only if it must be (it may not fit).
      const fits = into !== undefined && (length === undefined ? !ownBuffer : length <= into.byteLength);
      if (into && !fits && !ownBuffer) {
        body.destroy();
        throw tooLargeError(this.location, key, length!, into);
      }
      if (!fits) return Buffer.from(await readBody(reply.Body.transformToByteArray(), abortSignal));
      const tooLarge = (received: number) => tooLargeError(this.location, key, length ?? received, into);
      return readBody(readInto(body, into, abortSignal, tooLarge), abortSignal);
    });
  }

  async stat(key: string, signal?: AbortSignal): Promise<ObjectInfo | undefined> {
    const { s3, client } = await this.connect();
    try {
      return await this.request(key, 0, signal, async (abortSignal) => {
        const reply = await client.send(new s3.HeadObjectCommand({ Bucket: this.options.bucket, Key: this.keyOf(key) }), { abortSignal });
        return { sizeBytes: reply.ContentLength ?? 0 };
      });
    } catch (err) {
      if (err instanceof FerryError && err.code === 'not-found') return undefined;
      throw err;
    }
  }

  async *list(prefix: string, signal?: AbortSignal): AsyncIterable<string> {
    const base = this.options.prefix ? `${this.options.prefix}/` : '';
    const { s3, client } = await this.connect();
    let token: string | undefined;
    do {
      const reply = await this.request(prefix || '(list)', 0, signal, (abortSignal) =>
        client.send(new s3.ListObjectsV2Command({ Bucket: this.options.bucket, Prefix: base + prefix, ContinuationToken: token }), { abortSignal }),
      );
      for (const item of reply.Contents ?? []) {
        if (item.Key) yield item.Key.slice(base.length);
      }
      token = reply.IsTruncated ? reply.NextContinuationToken : undefined;
    } while (token);
  }

  async delete(key: string, signal?: AbortSignal): Promise<void> {
    const { s3, client } = await this.connect();
    try {
      await this.request(key, 0, signal, (abortSignal) => client.send(new s3.DeleteObjectCommand({ Bucket: this.options.bucket, Key: this.keyOf(key) }), { abortSignal }));
    } catch (err) {
      if (!(err instanceof FerryError && err.code === 'not-found')) throw err;
    }
  }

  async close(): Promise<void> {
    if (this.sdk) (await this.sdk).client.destroy();
  }

  private keyOf(key: string): string {
    if (!isValidKey(key)) throw new FerryError('bad-input', `object key ${JSON.stringify(key)} is not a valid key`);
    return this.options.prefix ? `${this.options.prefix}/${key}` : key;
  }

  private get timeoutMs(): number {
    return this.options.timeoutMs ?? defaultS3TimeoutMs;
  }

  /**
   * Runs one request under its deadline (the timeout, plus `extraMs` for the bytes it
   * uploads) and the caller's signal, and translates its failure. The deadline is a timer of
   * its own, cleared when the request settles: Node 20 may collect an AbortSignal.timeout()
   * that only an AbortSignal.any() refers to, and then it never fires.
   */
  private async request<T>(key: string, extraMs: number, signal: AbortSignal | undefined, run: (abortSignal: AbortSignal) => Promise<T>): Promise<T> {
    const deadline = new AbortController();
    const timer = setTimeout(() => deadline.abort(new Error('deadline')), this.timeoutMs + extraMs);
    try {
      return await run(signal ? AbortSignal.any([deadline.signal, signal]) : deadline.signal);
    } catch (err) {
      throw this.translate(key, err, signal, deadline.signal);
    } finally {
      clearTimeout(timer);
    }
  }

  private translate(key: string, err: unknown, signal?: AbortSignal, deadline?: AbortSignal): FerryError {
    if (deadline?.aborted && !signal?.aborted) {
      return new FerryError('store-unavailable', `${this.location}: ${key}: no reply within its deadline (a stalled connection?)`, { cause: err, transient: true });
    }
    if (err instanceof FerryError) return err;
    if (signal?.aborted) return new FerryError('aborted', 'operation aborted', { cause: err });
    const e = err as { name?: string; message?: string; $metadata?: { httpStatusCode?: number } };
    const status = e.$metadata?.httpStatusCode;
    if (e.name === 'CredentialsProviderError') {
      const hint = 'set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or name a profile of ~/.aws/credentials with --s3-profile or AWS_PROFILE';
      return new FerryError('store-unavailable', `${this.location}: no S3 credentials (${e.message ?? 'none found'}): ${hint}`, { cause: err });
    }
    if (e.name === 'NoSuchKey' || e.name === 'NotFound' || status === 404) {
      if (e.name === 'NoSuchBucket') {
        return new FerryError('store-unavailable', `${this.location}: bucket ${this.options.bucket} does not exist`, { cause: err });
      }
      return new FerryError('not-found', `object ${key} not found in ${this.location}`, { cause: err });
    }
    const what = status ? `HTTP ${status} ${e.name ?? ''}`.trim() : (e.message ?? String(err));
    // Worth trying again: the server's own trouble (5xx, SlowDown), throttling, or no reply at
    // all (a reset, a refused connection); not a refusal of this request (403, 400).
    const transient = status === undefined || status >= 500 || status === 429;
    return new FerryError('store-unavailable', `${this.location}: ${key}: ${what}`, { cause: err, transient });
  }
}

/**
 * A response body read into `into`: the result is a view of it. Once `signal` fires nothing
 * more is copied: the caller (or a retry) may own `into` again by then.
 */
async function readInto(body: Readable, into: Uint8Array, signal: AbortSignal, tooLarge: (received: number) => FerryError): Promise<Buffer> {
  const target = Buffer.from(into.buffer, into.byteOffset, into.byteLength);
  let length = 0;
  for await (const piece of body as AsyncIterable<Buffer>) {
    if (signal.aborted) {
      body.destroy();
      throw signal.reason;
    }
    if (length + piece.byteLength > target.byteLength) {
      body.destroy();
      throw tooLarge(length + piece.byteLength);
    }
    piece.copy(target, length);
    length += piece.byteLength;
  }
  return target.subarray(0, length);
}

/** A response body read to its end, or abandoned when `signal` fires (a body that stalled half-way). */
async function readBody<T>(reading: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) throw signal.reason;
  let onAbort = () => {};
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
  });
  try {
    return await Promise.race([reading, aborted]);
  } finally {
    signal.removeEventListener('abort', onAbort);
    reading.catch(() => {}); // settles later, if ever: nothing waits for it
  }
}
