/**
 * Client of a `ferry filter` control socket (HTTP on a unix socket, node:http with
 * socketPath). Errors come back as the FerryError the filter raised. `cutoverSource(id)`
 * is the CutoverSource port of one disk, so a cutover can run in another process than the
 * filter (see migrate/disk-cutover.ts).
 */
import { request as httpRequest } from 'node:http';
import { FerryError } from '../core/index.js';
import type { TrackingMode } from '../delta/index.js';
import type { BaseCopyStatus, CutoverSource, FilterDiskStatus, SeedExportStatus } from '../migrate/index.js';
import { errorFromResponse } from './http-errors.js';

export interface FilterDiskList {
  disks: FilterDiskStatus[];
  rateBytesPerSec: number;
}

export interface DiskHash {
  id: string;
  sha256: string;
  sizeBytes: number;
}

export interface RequestOptions {
  signal?: AbortSignal;
  /** Give up after this long (default 60 s; 0 = no limit, for drains and hashes). */
  timeoutMs?: number;
}

export class FilterControlClient {
  constructor(readonly socketPath: string) {}

  listDisks(options?: RequestOptions): Promise<FilterDiskList> {
    return this.request('GET', '/v1/disks', undefined, options);
  }

  disk(id: string, options?: RequestOptions): Promise<FilterDiskStatus> {
    return this.request('GET', `/v1/disks/${encodeURIComponent(id)}`, undefined, options);
  }

  async quiesce(id: string, options?: RequestOptions): Promise<void> {
    await this.request('POST', `/v1/disks/${encodeURIComponent(id)}/quiesce`, undefined, options);
  }

  async resume(id: string, options?: RequestOptions): Promise<void> {
    await this.request('POST', `/v1/disks/${encodeURIComponent(id)}/resume`, undefined, options);
  }

  async drain(id: string, options: RequestOptions = {}): Promise<number> {
    const reply = await this.request<{ finalSeq: number }>('POST', `/v1/disks/${encodeURIComponent(id)}/drain`, undefined, { timeoutMs: 0, ...options });
    return reply.finalSeq;
  }

  hash(id: string, options: RequestOptions = {}): Promise<DiskHash> {
    return this.request('POST', `/v1/disks/${encodeURIComponent(id)}/hash`, undefined, { timeoutMs: 0, ...options });
  }

  startBaseCopy(id: string, body: { concurrency?: number } = {}, options?: RequestOptions): Promise<BaseCopyStatus> {
    return this.request('POST', `/v1/disks/${encodeURIComponent(id)}/base-copy`, body, options);
  }

  baseCopy(id: string, options?: RequestOptions): Promise<BaseCopyStatus> {
    return this.request('GET', `/v1/disks/${encodeURIComponent(id)}/base-copy`, undefined, options);
  }

  startSeedExport(body: { device: string; disks?: string[]; volumeSizeBytes?: number; key?: { keyFileBase64: string } | { passphrase: string } }, options?: RequestOptions): Promise<SeedExportStatus> {
    return this.request('POST', '/v1/seed-export', body, options);
  }

  seedExport(options?: RequestOptions): Promise<SeedExportStatus> {
    return this.request('GET', '/v1/seed-export', undefined, options);
  }

  async setMode(id: string, mode: TrackingMode, reason?: string, options?: RequestOptions): Promise<TrackingMode> {
    const reply = await this.request<{ mode: TrackingMode }>('PUT', `/v1/disks/${encodeURIComponent(id)}/mode`, { mode, reason }, options);
    return reply.mode;
  }

  async setRate(rate: string | number, options?: RequestOptions): Promise<number> {
    const body = typeof rate === 'string' ? { rate } : { rateBytesPerSec: rate };
    const reply = await this.request<{ rateBytesPerSec: number }>('PUT', '/v1/rate', body, options);
    return reply.rateBytesPerSec;
  }

  /** One disk's source side, as the cutover sees it, over this socket. */
  cutoverSource(id: string): CutoverSource {
    return {
      quiesce: () => this.quiesce(id, { timeoutMs: 0 }),
      resume: async () => {
        try {
          await this.resume(id);
        } catch (err) {
          const reason = err instanceof Error ? err.message : String(err);
          throw new FerryError('io', `disk ${id}: resuming the source failed, it may still be paused (resume it with POST /v1/disks/${id}/resume): ${reason}`, { cause: err });
        }
      },
      drainFinal: (signal) => this.drain(id, { signal }),
    };
  }

  /** One JSON request; resolves with the parsed reply, rejects with the filter's FerryError. */
  request<T>(method: string, path: string, body?: unknown, options: RequestOptions = {}): Promise<T> {
    const what = `${method} ${path} on ${this.socketPath}`;
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const timeoutMs = options.timeoutMs ?? 60_000;
    return new Promise<T>((resolve, reject) => {
      const req = httpRequest(
        {
          socketPath: this.socketPath,
          path,
          method,
          headers: payload ? { 'content-type': 'application/json', 'content-length': payload.byteLength } : {},
          signal: options.signal,
          timeout: timeoutMs || undefined,
        },
        (res) => {
          const parts: Buffer[] = [];
          res.on('data', (part: Buffer) => parts.push(part));
          res.on('error', (err) => reject(new FerryError('io', `${what}: ${err.message}`, { cause: err })));
          res.on('end', () => {
            const text = Buffer.concat(parts).toString('utf8');
            let parsed: unknown = text;
            try {
              parsed = text === '' ? undefined : JSON.parse(text);
            } catch {
              // not JSON: reported as text below
            }
            const status = res.statusCode ?? 0;
            if (status >= 200 && status < 300) resolve(parsed as T);
            else reject(errorFromResponse(status, parsed, what));
          });
        },
      );
      req.on('timeout', () => req.destroy(new FerryError('io', `${what}: no reply within ${timeoutMs} ms`)));
      req.on('error', (err: NodeJS.ErrnoException) => {
        if (err instanceof FerryError) reject(err);
        else if (err.name === 'AbortError') reject(new FerryError('aborted', `${what}: aborted`, { cause: err }));
        else if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED') {
          reject(new FerryError('not-found', `no ferry filter answers on ${this.socketPath} (${err.code}): is it running, and is --control right?`, { cause: err }));
        } else reject(new FerryError('io', `${what}: ${err.message}`, { cause: err }));
      });
      req.end(payload);
    });
  }
}
