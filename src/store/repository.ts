/**
 * The repository layout on top of an object store (docs/FORMAT.md):
 *
 *   config                 JSON: format, version, repository id, default chunk size
 *   chunks/<hh>/<sha256>   raw chunk bytes, named by their SHA-256 (hh = first two hex digits)
 *   manifests/<sha256>     JSON manifest, named by the SHA-256 of its bytes
 *   deltas/<disk>/<replication>/<seq>-…   captured changes of one replication of a disk,
 *                          checksummed inside (encoded and named by src/delta)
 *   deltas/<disk>/<replication>/cutover.json   the mark of a replication that was cut over
 *
 * Every object is verified against its name when read. Chunks must be durable before a
 * manifest that names them is written: the manifest is the commit point.
 */
import { randomBytes } from 'node:crypto';
import { FerryError, checkReplicationId, sha256Hex, type ChunkHasher } from '../core/index.js';
import { decodeManifest, encodeManifest, type Manifest } from './manifest.js';
import type { GetOptions, ObjectStore } from './object-store.js';

export const repositoryVersion = 1;
export const cutoverMarkVersion = 1;
const cutoverMarkName = 'cutover.json';

/** `deltas/<disk>/<replication>/cutover.json`: the replication was cut over (docs/FORMAT.md). */
export interface CutoverMark {
  format: 'ferry-cutover';
  version: typeof cutoverMarkVersion;
  disk: string;
  replication: string;
  /** Replay ends here: every record below it is in the replica, none after it exists. */
  finalSeq: number;
  /** When the source was fenced, ISO 8601 UTC. */
  at: string;
  verified: 'full' | 'deltas';
}
export const defaultChunkSizeBytes = 4 * 1024 * 1024;

export interface RepositoryConfig {
  format: 'ferry-repository';
  version: typeof repositoryVersion;
  id: string;
  chunkSizeBytes: number;
  createdAt: string;
}

export function chunkKey(hash: string): string {
  return `chunks/${hash.slice(0, 2)}/${hash}`;
}

export function manifestKey(id: string): string {
  return `manifests/${id}`;
}

/** Where one replication's deltas (and its cutover mark) live: `deltas/<disk>/<replication>/`. */
export function replicationPrefix(diskId: string, replication: string): string {
  return `deltas/${checkDiskId(diskId)}/${checkReplicationId(replication)}/`;
}

export class Repository {
  private constructor(
    readonly store: ObjectStore,
    readonly config: RepositoryConfig,
  ) {}

  /** Opens the repository in `store`, creating its config if the store is empty. */
  static async openOrInit(store: ObjectStore, chunkSizeBytes = defaultChunkSizeBytes): Promise<Repository> {
    if (await store.stat('config')) return Repository.open(store);
    const config: RepositoryConfig = {
      format: 'ferry-repository',
      version: repositoryVersion,
      id: randomBytes(16).toString('hex'),
      chunkSizeBytes,
      createdAt: new Date().toISOString(),
    };
    await store.put('config', Buffer.from(`${JSON.stringify(config, null, 2)}\n`));
    return new Repository(store, config);
  }

  static async open(store: ObjectStore): Promise<Repository> {
    let bytes: Buffer;
    try {
      bytes = await store.get('config');
    } catch (err) {
      if (err instanceof FerryError && err.code === 'not-found') {
        throw new FerryError('not-found', `no ferry repository in ${store.location} (object "config" is missing)`, { cause: err });
      }
      throw err;
    }
    let config: Partial<RepositoryConfig>;
    try {
      config = JSON.parse(bytes.toString('utf8'));
    } catch (err) {
      throw new FerryError('checksum-mismatch', `config of ${store.location} is not valid JSON`, { cause: err });
    }
    if (config.format !== 'ferry-repository') {
      throw new FerryError('bad-input', `config of ${store.location}: format is ${JSON.stringify(config.format)}, expected "ferry-repository"`);
    }
    if (config.version !== repositoryVersion) {
      throw new FerryError(
        'unsupported-version',
        `config of ${store.location} has format version ${JSON.stringify(config.version)}; this ferry reads version ${repositoryVersion}`,
      );
    }
    return new Repository(store, config as RepositoryConfig);
  }

  async hasChunk(hash: string, signal?: AbortSignal): Promise<boolean> {
    return (await this.store.stat(chunkKey(hash), signal)) !== undefined;
  }

  /**
   * Stores a chunk as part of a batch: `putManifest` makes it durable before the manifest.
   * `onDataReleased`: see PutOptions (the buffer may be reused before the put settles).
   */
  async putChunk(hash: string, data: Uint8Array, signal?: AbortSignal, options?: { onDataReleased?: () => void }): Promise<void> {
    await this.store.put(chunkKey(hash), data, signal, { batch: true, onDataReleased: options?.onDataReleased });
  }

  /**
   * Reads a chunk and checks its SHA-256 against its name. `into`: see GetOptions (a chunk
   * larger than it is refused unread); `hasher` hashes it (off the main thread, for a chunk
   * read into shared memory).
   */
  async getChunk(hash: string, signal?: AbortSignal, options: { into?: Uint8Array; hasher?: ChunkHasher } = {}): Promise<Buffer> {
    const key = chunkKey(hash);
    const data = await this.store.get(key, signal, { into: options.into });
    const actual = options.hasher ? await options.hasher.hash(data) : sha256Hex(data);
    if (actual !== hash) {
      throw new FerryError('checksum-mismatch', `chunk ${key} in ${this.store.location} is corrupt: its SHA-256 is ${actual}`);
    }
    return data;
  }

  /** Writes a manifest and returns its id. Call only after every chunk it names is stored. */
  async putManifest(manifest: Manifest, signal?: AbortSignal): Promise<string> {
    await this.store.flush(signal); // every chunk it names is durable first (the commit point)
    const bytes = encodeManifest(manifest);
    const id = sha256Hex(bytes);
    await this.store.put(manifestKey(id), bytes, signal);
    return id;
  }

  /** Reads a manifest by id (or unique id prefix), verifies and decodes it. */
  async getManifest(idOrPrefix: string, signal?: AbortSignal): Promise<{ id: string; manifest: Manifest }> {
    const id = await this.resolveManifestId(idOrPrefix, signal);
    const key = manifestKey(id);
    const bytes = await this.store.get(key, signal);
    const actual = sha256Hex(bytes);
    if (actual !== id) {
      throw new FerryError('checksum-mismatch', `manifest ${key} in ${this.store.location} is corrupt: its SHA-256 is ${actual}`);
    }
    return { id, manifest: decodeManifest(bytes, key) };
  }

  async *listManifestIds(signal?: AbortSignal): AsyncIterable<string> {
    for await (const key of this.store.list('manifests/', signal)) yield key.slice('manifests/'.length);
  }

  /** Stores a delta object (encoded by src/delta) under its key: the commit point of its changes. */
  async putDeltaObject(key: string, bytes: Uint8Array, signal?: AbortSignal): Promise<void> {
    await this.store.put(key, bytes, signal);
  }

  async getDeltaObject(key: string, signal?: AbortSignal, options?: GetOptions): Promise<Buffer> {
    return this.store.get(key, signal, options);
  }

  async deleteDeltaObject(key: string, signal?: AbortSignal): Promise<void> {
    await this.store.delete(key, signal);
  }

  /**
   * The keys of one replication's delta objects, in no particular order, and whether the
   * replication carries a cutover mark: one listing, so a follower's poll costs one request.
   */
  async listReplication(diskId: string, replication: string, signal?: AbortSignal): Promise<{ keys: string[]; cutOver: boolean }> {
    const prefix = replicationPrefix(diskId, replication);
    const keys: string[] = [];
    let cutOver = false;
    for await (const key of this.store.list(prefix, signal)) {
      if (key === `${prefix}${cutoverMarkName}`) cutOver = true;
      else keys.push(key);
    }
    return { keys, cutOver };
  }

  /**
   * Marks a replication as cut over: its source is fenced and no applier follows it any
   * more. Written once, after the source was fenced (the mark is never rolled back).
   */
  async putCutoverMark(mark: Omit<CutoverMark, 'format' | 'version'>, signal?: AbortSignal): Promise<void> {
    const full: CutoverMark = { format: 'ferry-cutover', version: cutoverMarkVersion, ...mark };
    await this.store.put(`${replicationPrefix(mark.disk, mark.replication)}${cutoverMarkName}`, Buffer.from(`${JSON.stringify(full, null, 2)}\n`), signal);
  }

  /** The cutover mark of a replication, checked; undefined if it has none. */
  async getCutoverMark(diskId: string, replication: string, signal?: AbortSignal): Promise<CutoverMark | undefined> {
    const key = `${replicationPrefix(diskId, replication)}${cutoverMarkName}`;
    let bytes: Buffer;
    try {
      bytes = await this.store.get(key, signal);
    } catch (err) {
      if (err instanceof FerryError && err.code === 'not-found') return undefined;
      throw err;
    }
    let mark: Partial<CutoverMark>;
    try {
      mark = JSON.parse(bytes.toString('utf8')) as Partial<CutoverMark>;
    } catch (err) {
      throw new FerryError('checksum-mismatch', `cutover mark ${key} in ${this.store.location} is not valid JSON`, { cause: err });
    }
    if (mark.format !== 'ferry-cutover') throw new FerryError('checksum-mismatch', `cutover mark ${key}: format is ${JSON.stringify(mark.format)}, expected "ferry-cutover"`);
    if (mark.version !== cutoverMarkVersion) {
      throw new FerryError('unsupported-version', `cutover mark ${key} has version ${JSON.stringify(mark.version)}; this ferry reads ${cutoverMarkVersion}`);
    }
    if (mark.disk !== diskId || mark.replication !== replication || !Number.isSafeInteger(mark.finalSeq) || typeof mark.at !== 'string') {
      throw new FerryError('checksum-mismatch', `cutover mark ${key} is damaged: ${bytes.toString('utf8').slice(0, 200)}`);
    }
    return mark as CutoverMark;
  }

  private async resolveManifestId(idOrPrefix: string, signal?: AbortSignal): Promise<string> {
    if (!/^[0-9a-f]{4,64}$/.test(idOrPrefix)) {
      throw new FerryError('bad-input', `manifest id: expected 4 to 64 lower-case hex digits, received ${JSON.stringify(idOrPrefix)}`);
    }
    if (idOrPrefix.length === 64) return idOrPrefix;
    const matches: string[] = [];
    for await (const id of this.listManifestIds(signal)) if (id.startsWith(idOrPrefix)) matches.push(id);
    if (matches.length === 0) throw new FerryError('not-found', `no manifest ${idOrPrefix} in ${this.store.location}`);
    if (matches.length > 1) throw new FerryError('bad-input', `manifest id ${idOrPrefix} is ambiguous: it matches ${matches.length} manifests`);
    return matches[0]!;
  }
}

const diskIdPattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** Disk ids name a disk's deltas in the store: letters, digits, '.', '_', '-'. */
export function checkDiskId(diskId: string): string {
  if (!diskIdPattern.test(diskId)) {
    throw new FerryError('bad-input', `disk id: expected 1 to 128 letters, digits, '.', '_' or '-', received ${JSON.stringify(diskId)}`);
  }
  return diskId;
}
