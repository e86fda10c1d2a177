/**
 * The manifest codec: which chunks make up a disk. A manifest is JSON, named by the SHA-256
 * of its bytes, so reading it back verifies it. docs/FORMAT.md describes version 2 (version 1,
 * the same without `replication`, is still read).
 */
import { FerryError, isReplicationId } from '../core/index.js';

export const manifestVersion = 2;

export interface Manifest {
  format: 'ferry-manifest';
  version: typeof manifestVersion | 1;
  disk: { name: string; sizeBytes: number };
  chunkSizeBytes: number;
  /** Journal seq at which the copy began; replay of deltas starts here (0 without capture). */
  epoch: number;
  /** The replication `epoch` counts in: a copy of a disk under capture. Absent for a plain copy. */
  replication?: string;
  /**
   * A copy of a disk in use is read over time: restored, it is a consistent image only once
   * replay has reached the seq at which the copy ended. Absent: the epoch.
   */
  consistentAt?: number;
  createdAt: string;
  /** Non-zero chunks as [index, sha256]; an index that is absent is all zeros. */
  chunks: Array<[number, string]>;
}

export function chunkCount(manifest: Pick<Manifest, 'disk' | 'chunkSizeBytes'>): number {
  return Math.ceil(manifest.disk.sizeBytes / manifest.chunkSizeBytes);
}

export function encodeManifest(manifest: Manifest): Buffer {
  return Buffer.from(`${JSON.stringify(manifest)}\n`);
}

const hashPattern = /^[0-9a-f]{64}$/;

/** Parses and validates a manifest; `name` is the object, for messages. */
export function decodeManifest(bytes: Uint8Array, name: string): Manifest {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch (err) {
    throw new FerryError('checksum-mismatch', `manifest ${name} is not valid JSON`, { cause: err });
  }
  const m = value as Partial<Manifest> | null;
  const bad = (what: string) => new FerryError('bad-input', `manifest ${name}: ${what}`);
  if (!m || typeof m !== 'object' || m.format !== 'ferry-manifest') throw bad(`format is ${JSON.stringify(m?.format)}, expected "ferry-manifest"`);
  if (m.version !== manifestVersion && m.version !== 1) {
    throw new FerryError(
      'unsupported-version',
      `manifest ${name} has format version ${JSON.stringify(m.version)}; this ferry reads version ${manifestVersion}`,
    );
  }
  if (!m.disk || typeof m.disk.name !== 'string' || !Number.isSafeInteger(m.disk.sizeBytes) || m.disk.sizeBytes <= 0) {
    throw bad(`disk is ${JSON.stringify(m.disk)}, expected {name, sizeBytes > 0}`);
  }
  if (!Number.isSafeInteger(m.chunkSizeBytes) || m.chunkSizeBytes! <= 0) throw bad(`chunkSizeBytes is ${m.chunkSizeBytes}`);
  if (!Number.isSafeInteger(m.epoch) || m.epoch! < 0) throw bad(`epoch is ${m.epoch}`);
  if (m.replication !== undefined && !isReplicationId(m.replication)) throw bad(`replication is ${JSON.stringify(m.replication)}, expected 32 hex digits`);
  if (m.consistentAt !== undefined && (!Number.isSafeInteger(m.consistentAt) || m.consistentAt < m.epoch!)) throw bad(`consistentAt is ${m.consistentAt}, expected a seq >= the epoch ${m.epoch}`);
  if (!Array.isArray(m.chunks)) throw bad('chunks is not a list');
  const count = chunkCount(m as Manifest);
  let previous = -1;
  for (const entry of m.chunks) {
    const [index, hash] = Array.isArray(entry) ? entry : [];
    if (!Number.isSafeInteger(index) || (index as number) <= previous || (index as number) >= count || typeof hash !== 'string' || !hashPattern.test(hash)) {
      throw bad(`chunk entry ${JSON.stringify(entry)} is invalid (indexes ascend below ${count}, hashes are SHA-256 hex)`);
    }
    previous = index as number;
  }
  return m as Manifest;
}
