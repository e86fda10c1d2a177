/**
 * Deltas in the store: the repository keeps delta objects under their keys
 * (`deltas/<disk>/<replication>/…`); this module encodes, names, verifies and orders them.
 */
import { FerryError, type ChunkHasher, type WriteData } from '../core/index.js';
import type { Repository } from '../store/index.js';
import { decodeDelta, deltaHashedBytes, deltaKey, encodeDelta, parseDeltaKey, type Delta, type DeltaName } from './delta-codec.js';

/** Writes a delta of `delta.replication`: the commit point of the changes it carries. */
export async function putDelta(repo: Repository, diskId: string, delta: Delta<WriteData>, signal?: AbortSignal): Promise<{ key: string; sizeBytes: number }> {
  const key = deltaKey(diskId, delta);
  const bytes = encodeDelta(delta);
  await repo.putDeltaObject(key, bytes, signal);
  return { key, sizeBytes: bytes.byteLength };
}

/**
 * Reads and verifies a delta (SHA-256 trailer, and that its header matches its key). With
 * `into` (shared memory) and `hasher`, a delta that fits is read into it and hashed there on
 * the hasher's worker thread (deltas asked for together are hashed by one message); the
 * delta's data are then views of `into`.
 */
export async function getDelta(repo: Repository, name: DeltaName, signal?: AbortSignal, options: { into?: Buffer; hasher?: ChunkHasher } = {}): Promise<Delta> {
  const { into, hasher } = options;
  const bytes = await repo.getDeltaObject(name.key, signal, { into, larger: 'own-buffer' });
  const onWorker = hasher !== undefined && bytes.buffer instanceof SharedArrayBuffer;
  const sha256 = onWorker ? await hasher.hash(deltaHashedBytes(bytes)) : undefined;
  const delta = decodeDelta(bytes, name.key, sha256);
  const second = delta.kind === 'journal' ? delta.endSeq : delta.part;
  if (delta.kind !== name.kind || delta.replication !== name.replication || delta.seq !== name.seq || delta.generation !== name.generation || second !== name.second) {
    throw new FerryError(
      'checksum-mismatch',
      `delta ${name.key} is corrupt: its header (${delta.kind} ${delta.seq}/${second} of replication ${delta.replication}) does not match its name`,
    );
  }
  return delta;
}

/**
 * One replication's deltas in replay order (by seq; at the same seq resyncs, by generation
 * then part, come before the journal delta that continues from them), and whether the
 * replication carries a cutover mark. Objects whose key is not a delta's are left alone.
 */
export async function listDeltas(repo: Repository, diskId: string, replication: string, signal?: AbortSignal): Promise<{ deltas: DeltaName[]; cutOver: boolean }> {
  const { keys, cutOver } = await repo.listReplication(diskId, replication, signal);
  const deltas: DeltaName[] = [];
  for (const key of keys) {
    const name = parseDeltaKey(key);
    if (name?.replication === replication) deltas.push(name);
  }
  const rank = (n: DeltaName) => (n.kind === 'resync' ? 0 : 1);
  deltas.sort((a, b) => a.seq - b.seq || rank(a) - rank(b) || a.generation - b.generation || a.second - b.second);
  return { deltas, cutOver };
}

export async function deleteDelta(repo: Repository, name: DeltaName, signal?: AbortSignal): Promise<void> {
  await repo.deleteDeltaObject(name.key, signal);
}
