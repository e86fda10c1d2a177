/**
 * Client of a `ferry filter` or `ferry agent` control API: HTTP on its unix socket (a path),
 * or HTTPS on its TCP address (`https://host:port`) with a bearer token, the server pinned
 * by its certificate's SHA-256 fingerprint. Over TLS each request first completes the
 * handshake and checks the fingerprint, and only then sends anything: a server presenting
 * another certificate never sees the request or the token. Errors come back as the
 * FerryError the filter raised. `cutoverSource(id)` is the CutoverSource port of one disk, so
 * a cutover can run in another process than the filter (see migrate/disk-cutover.ts); it
 * renews its quiesce's lease while it holds it.
 */
import { request as httpRequest } from 'node:http';
import { isIP } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { FerryError, type DiskDigest } from '../core/index.js';
import type { CutoverSource, FinalDrain, HealthCheck, SideSpec, VmStatus } from '../cutover/index.js';
import type { BackpressureSettings, FenceRecord, TrackingMode } from '../delta/index.js';
import type { BaseCopyStatus, FilterDiskStatus, QuiesceStatus, ReplicaStatus, SeedExportStatus, SeedImportStatus } from '../migrate/index.js';
import { errorFromResponse } from './http-errors.js';
import { normalizeFingerprint } from './tls-cert.js';

export interface FilterDiskList {
  disks: FilterDiskStatus[];
  rateBytesPerSec: number;
}

export interface DiskHash {
  id: string;
  sha256: string;
  sizeBytes: number;
}

export type VmAction = 'status' | 'check' | 'start' | 'pause' | 'resume' | 'stop' | 'health';

/** A VM's side as the plan gives it, the replica files it boots from, its health checks. */
export interface VmActionBody {
  side: 'source' | 'destination';
  spec: SideSpec;
  disks?: string[];
  health?: HealthCheck;
}

export interface RequestOptions {
  signal?: AbortSignal;
  /** Give up after this long (default 60 s; 0 = no limit, for drains and hashes). */
  timeoutMs?: number;
}

/** How to reach an agent over TLS: its bearer token and its certificate's fingerprint. */
export interface ControlTlsOptions {
  token: string;
  /** `sha256:<hex>` as `ferry agent` prints it (bare or colon-separated hex is accepted too). */
  fingerprint: string;
}

/** An agent reached over TLS: where, the Authorization header, the pinned fingerprint. */
interface RemoteControl {
  host: string;
  port: number;
  authorization: string;
  fingerprint: string;
}

export class FilterControlClient {
  /** Set for an https:// address; private, so the token shows in no inspection of the client. */
  readonly #remote: RemoteControl | undefined;

  /** `address`: the control socket's path, or `https://host:port` with `tls`. */
  constructor(
    readonly address: string,
    tls?: ControlTlsOptions,
  ) {
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(address)) {
      let url: URL;
      try {
        url = new URL(address);
      } catch {
        throw new FerryError('bad-input', `control address: expected https://HOST:PORT or a unix socket path, received ${JSON.stringify(address)}`);
      }
      if (url.protocol !== 'https:' || url.port === '' || (url.pathname !== '/' && url.pathname !== '')) {
        throw new FerryError('bad-input', `control address: expected https://HOST:PORT or a unix socket path, received ${JSON.stringify(address)}`);
      }
      if (!tls?.token) throw new FerryError('bad-input', `control address ${address}: a bearer token is needed over TLS`);
      if (!tls.fingerprint) throw new FerryError('bad-input', `control address ${address}: the fingerprint of its certificate is needed over TLS (ferry agent prints it)`);
      this.#remote = {
        host: url.hostname.replace(/^\[(.*)\]$/, '$1'),
        port: Number(url.port),
        authorization: `Bearer ${tls.token}`,
        fingerprint: normalizeFingerprint(tls.fingerprint),
      };
    } else if (tls) {
      throw new FerryError('bad-input', `control address ${JSON.stringify(address)}: a token and fingerprint go with an https:// address, not a unix socket`);
    }
  }

  listDisks(options?: RequestOptions): Promise<FilterDiskList> {
    return this.request('GET', '/v1/disks', undefined, options);
  }

  disk(id: string, options?: RequestOptions): Promise<FilterDiskStatus> {
    return this.request('GET', `/v1/disks/${encodeURIComponent(id)}`, undefined, options);
  }

  /** Quiesces the disk for `owner`; waits for the IO in flight, so no timeout by default. */
  quiesce(id: string, owner: string, leaseMs?: number, options: RequestOptions = {}): Promise<QuiesceStatus> {
    return this.request('POST', `/v1/disks/${encodeURIComponent(id)}/quiesce`, { owner, leaseMs }, { timeoutMs: 0, ...options });
  }

  renew(id: string, owner: string, leaseMs?: number, options?: RequestOptions): Promise<QuiesceStatus> {
    return this.request('POST', `/v1/disks/${encodeURIComponent(id)}/quiesce/renew`, { owner, leaseMs }, options);
  }

  /** Resumes the disk as its quiesce's owner, or with `{ force: true }` as an operator. */
  async resume(id: string, by: { owner: string } | { force: true }, options?: RequestOptions): Promise<void> {
    await this.request('POST', `/v1/disks/${encodeURIComponent(id)}/resume`, by, options);
  }

  async drain(id: string, owner: string, options: RequestOptions = {}): Promise<FinalDrain> {
    const { finalSeq, bytes } = await this.request<FinalDrain>('POST', `/v1/disks/${encodeURIComponent(id)}/drain`, { owner }, { timeoutMs: 0, ...options });
    return { finalSeq, bytes };
  }

  async fence(id: string, owner: string, finalSeq: number, options?: RequestOptions): Promise<FenceRecord> {
    const reply = await this.request<{ fence: FenceRecord }>('POST', `/v1/disks/${encodeURIComponent(id)}/fence`, { owner, finalSeq }, options);
    return reply.fence;
  }

  /** Releases a fenced disk; resolves with its new replication's id. */
  async releaseFence(id: string, reason?: string, options?: RequestOptions): Promise<string> {
    const reply = await this.request<{ replication: string }>('DELETE', `/v1/disks/${encodeURIComponent(id)}/fence`, { reason }, options);
    return reply.replication;
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

  /** An agent: import a seed device into a store, in the background. */
  startSeedImport(body: { device: string; store: string; key?: { keyFileBase64: string } | { passphrase: string } }, options?: RequestOptions): Promise<SeedImportStatus> {
    return this.request('POST', '/v1/seed-import', body, options);
  }

  seedImport(options?: RequestOptions): Promise<SeedImportStatus> {
    return this.request('GET', '/v1/seed-import', undefined, options);
  }

  setBackpressure(id: string, changes: { highWaterBytes?: number; maxDelayMs?: number }, options?: RequestOptions): Promise<BackpressureSettings> {
    return this.request('PUT', `/v1/disks/${encodeURIComponent(id)}/backpressure`, changes, options);
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

  /** An agent's VMs and their disks. */
  inventory(options?: RequestOptions): Promise<{ vms: Array<{ name: string; disks: Array<{ id: string; sizeBytes: number }> }> }> {
    return this.request('GET', '/v1/inventory', undefined, options);
  }

  /** An agent: restore a base into `path` and follow its replication there. */
  addReplica(body: { id: string; disk: string; store: string; manifest: string; path?: string }, options?: RequestOptions): Promise<ReplicaStatus> {
    return this.request('POST', '/v1/replicas', body, options);
  }

  async listReplicas(options?: RequestOptions): Promise<ReplicaStatus[]> {
    const reply = await this.request<{ replicas: ReplicaStatus[] }>('GET', '/v1/replicas', undefined, options);
    return reply.replicas;
  }

  replica(id: string, options?: RequestOptions): Promise<ReplicaStatus> {
    return this.request('GET', `/v1/replicas/${encodeURIComponent(id)}`, undefined, options);
  }

  /** Stops following the replica (its file stays); resolves with its last status. */
  removeReplica(id: string, options?: RequestOptions): Promise<ReplicaStatus> {
    return this.request('DELETE', `/v1/replicas/${encodeURIComponent(id)}`, undefined, options);
  }

  /** A cutover `owner` holds the replica (its follower stops) for `leaseMs`, renewed by each call. */
  holdReplica(id: string, owner: string, leaseMs?: number, options?: RequestOptions): Promise<ReplicaStatus> {
    return this.request('POST', `/v1/replicas/${encodeURIComponent(id)}/hold`, { owner, leaseMs }, options);
  }

  /** Applies what the store holds to a held replica, or (untilSeq) until replay reaches that seq. */
  applyReplica(id: string, owner: string, untilSeq?: number, options: RequestOptions = {}): Promise<ReplicaStatus> {
    return this.request('POST', `/v1/replicas/${encodeURIComponent(id)}/apply`, { owner, untilSeq }, { timeoutMs: 0, ...options });
  }

  hashReplica(id: string, owner: string, options: RequestOptions = {}): Promise<DiskDigest> {
    return this.request('POST', `/v1/replicas/${encodeURIComponent(id)}/hash`, { owner }, { timeoutMs: 0, ...options });
  }

  commitReplica(id: string, owner: string, finalSeq: number, verified: 'full' | 'deltas', options?: RequestOptions): Promise<ReplicaStatus> {
    return this.request('POST', `/v1/replicas/${encodeURIComponent(id)}/commit`, { owner, finalSeq, verified }, options);
  }

  releaseReplica(id: string, owner: string, options?: RequestOptions): Promise<ReplicaStatus> {
    return this.request('POST', `/v1/replicas/${encodeURIComponent(id)}/release`, { owner }, options);
  }

  /** A VM of the agent's host: `status` resolves with its VmStatus, the other actions once done. */
  vm(name: string, action: VmAction, body: VmActionBody, options: RequestOptions = {}): Promise<VmStatus | { ok: true }> {
    // start waits for QEMU, health for the guest: their time is the caller's to bound.
    return this.request('POST', `/v1/vms/${encodeURIComponent(name)}/${action}`, body, { timeoutMs: 0, ...options });
  }

  /**
   * One disk's source side, as the cutover `owner` sees it, over this socket. From the
   * quiesce until the resume or the fence, the lease is renewed every third of `leaseMs`;
   * once a renewal is refused (the lease ran out: the disk resumed), every later call fails
   * with that refusal, so the cutover can never commit on a source that ran meanwhile.
   */
  cutoverSource(id: string, owner: string, leaseMs?: number): CutoverSource {
    let renewing: NodeJS.Timeout | undefined;
    let lost: FerryError | undefined;
    const stopRenewing = () => clearInterval(renewing);
    const check = () => {
      if (lost) throw lost;
    };
    return {
      quiesce: async () => {
        const status = await this.quiesce(id, owner, leaseMs);
        renewing = setInterval(() => {
          this.renew(id, owner, status.leaseMs, { timeoutMs: status.leaseMs / 3 }).catch((err: unknown) => {
            // A refusal is final; a renewal that did not get through is tried again next time.
            if (err instanceof FerryError && (err.code === 'conflict' || err.code === 'invalid-state')) {
              lost = new FerryError('conflict', `disk ${id}: the cutover lost its quiesce: ${err.message}`, { cause: err });
              stopRenewing();
            }
          });
        }, status.leaseMs / 3);
        renewing.unref();
      },
      resume: async () => {
        stopRenewing();
        try {
          await this.resume(id, { owner });
        } catch (err) {
          const reason = err instanceof Error ? err.message : String(err);
          throw new FerryError(
            'io',
            `disk ${id}: resuming the source failed, it may still be paused until its lease runs out (or resume it now: POST /v1/disks/${id}/resume {"force":true}): ${reason}`,
            { cause: err },
          );
        }
      },
      drainFinal: async (signal) => {
        check();
        return this.drain(id, owner, { signal });
      },
      fence: async (finalSeq, signal) => {
        check();
        await this.fence(id, owner, finalSeq, { signal });
        stopRenewing();
      },
      hash: async (signal) => {
        check();
        return this.hash(id, { signal });
      },
    };
  }

  /** One JSON request; resolves with the parsed reply, rejects with the filter's FerryError. */
  async request<T>(method: string, path: string, body?: unknown, options: RequestOptions = {}): Promise<T> {
    const what = `${method} ${path} on ${this.address}`;
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const timeoutMs = options.timeoutMs ?? 60_000;
    const remote = this.#remote;
    const socket = remote ? await this.#connectPinned(remote, what, timeoutMs, options.signal) : undefined;
    return new Promise<T>((resolve, reject) => {
      const req = httpRequest(
        {
          // Over TLS, the pinned socket; else the unix socket, not through Node's global agent,
          // whose sockets time out after 5 s of silence (a drain or a hash asked to take as
          // long as it needs, timeoutMs 0, may be silent much longer).
          ...(socket ? { createConnection: () => socket, host: remote!.host, port: remote!.port } : { socketPath: this.address, agent: false }),
          path,
          method,
          headers: {
            ...(payload ? { 'content-type': 'application/json', 'content-length': payload.byteLength } : {}),
            ...(remote ? { authorization: remote.authorization } : {}),
          },
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
      req.on('error', (err: NodeJS.ErrnoException) => reject(this.#connectionError(err, what)));
      req.end(payload);
    });
  }

  /**
   * Opens a TLS connection to the agent and resolves with it once its certificate is the
   * pinned one; nothing is written before. The certificate is not checked against any CA or
   * name (it is self-signed, as a rule): the fingerprint is the check.
   */
  #connectPinned(remote: RemoteControl, what: string, timeoutMs: number, signal: AbortSignal | undefined): Promise<TLSSocket> {
    return new Promise<TLSSocket>((resolve, reject) => {
      if (signal?.aborted) return reject(new FerryError('aborted', `${what}: aborted`, { cause: signal.reason }));
      const socket = tlsConnect({
        host: remote.host,
        port: remote.port,
        servername: isIP(remote.host) ? undefined : remote.host,
        rejectUnauthorized: false,
      });
      const onAbort = () => fail(new FerryError('aborted', `${what}: aborted`, { cause: signal?.reason }));
      const onError = (err: NodeJS.ErrnoException) => fail(this.#connectionError(err, what));
      const onTimeout = () => fail(new FerryError('io', `${what}: no TLS handshake within ${timeoutMs} ms`));
      const settle = () => {
        signal?.removeEventListener('abort', onAbort);
        socket.off('error', onError);
        socket.off('timeout', onTimeout);
        socket.setTimeout(0);
      };
      const fail = (err: FerryError) => {
        settle();
        socket.destroy();
        reject(err);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      socket.on('error', onError);
      if (timeoutMs) socket.setTimeout(timeoutMs, onTimeout);
      socket.once('secureConnect', () => {
        const presented = socket.getPeerCertificate().fingerprint256;
        const fingerprint = presented ? normalizeFingerprint(presented) : undefined;
        if (fingerprint !== remote.fingerprint) {
          fail(
            new FerryError(
              'unauthorized',
              `${this.address} presented a certificate with fingerprint ${fingerprint ?? '(none)'}, but ${remote.fingerprint} is pinned: not the agent expected, nothing was sent`,
            ),
          );
          return;
        }
        settle();
        resolve(socket);
      });
    });
  }

  #connectionError(err: NodeJS.ErrnoException, what: string): FerryError {
    if (err instanceof FerryError) return err;
    if (err.name === 'AbortError') return new FerryError('aborted', `${what}: aborted`, { cause: err });
    if (this.#remote) {
      if (err.code === 'ECONNREFUSED' || err.code === 'ENOTFOUND' || err.code === 'EHOSTUNREACH') {
        return new FerryError('not-found', `no ferry agent answers on ${this.address} (${err.code}): is it running with --listen, and is the address right?`, { cause: err });
      }
    } else if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED') {
      return new FerryError('not-found', `no ferry filter answers on ${this.address} (${err.code}): is it running, and is --control right?`, { cause: err });
    }
    return new FerryError('io', `${what}: ${err.message}`, { cause: err });
  }
}
