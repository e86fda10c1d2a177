/**
 * `seed import`: a verified copy of a seed device's chunks into a store, then the disks'
 * manifests, the commit point (docs/DESIGN.md invariant 5), written only once every chunk they
 * name is in the store. Each chunk is checked (decrypted, SHA-256 against its name) before
 * it is stored (invariant 6); chunks the store already holds are skipped, so a re-run after
 * an interruption continues where it stopped.
 *
 * A damaged device does not fail the import: the chunks that are intact are stored, and
 * the report lists what is corrupt or missing. Those are then fetched, verified, from a store
 * at the source (`repairFrom`, or `repairSeed` later), and the manifests written.
 */
import PQueue from 'p-queue';
import { FerryError, ProgressMeter, forEachConcurrently, throwIfAborted, type Progress } from '../core/index.js';
import type { Repository } from '../store/index.js';
import { seedChunkHashes, type SeedManifest } from './device-manifest.js';
import { openSeedDevice, walkVolumes, type VolumeCheck } from './device.js';
import type { SeedKey } from './seed-crypto.js';
import type { CorruptChunk } from './verify.js';

export interface ImportSeedOptions {
  deviceDir: string;
  /** The destination store. */
  repo: Repository;
  key?: SeedKey;
  /** A store at the source holding the seed's chunks: corrupt or missing ones are fetched from it. */
  repairFrom?: Repository;
  /** Chunks being stored at once (default 8). */
  concurrency?: number;
  signal?: AbortSignal;
  onProgress?: (progress: Progress) => void;
}

export interface SeedManifestWritten {
  diskId: string;
  manifestId: string;
  epoch: number;
}

export interface ImportSeedReport {
  seedId: string;
  store: string;
  chunksNeeded: number;
  imported: number;
  bytesImported: number;
  /** Already in the store. */
  skipped: number;
  /** Fetched from the repair store. */
  repaired: number;
  corrupt: CorruptChunk[];
  /** Chunks still not in the store: the manifests were not written. */
  missing: string[];
  volumes: VolumeCheck[];
  /** Volumes changed after the export (every chunk in them verifies): the manifests are not written. */
  tampered: string[];
  /** Every chunk is in the store, no volume was tampered with, and the manifests are written. */
  complete: boolean;
  manifests: SeedManifestWritten[];
  elapsedMs: number;
}

export async function importSeed(options: ImportSeedOptions): Promise<ImportSeedReport> {
  const started = Date.now();
  const { repo, signal } = options;
  const device = await openSeedDevice(options.deviceDir, options.key, true);
  const { manifest } = device;
  const needed = seedChunkHashes(manifest);
  const handled = new Set<string>();
  const corrupt: CorruptChunk[] = [];
  const report = { imported: 0, bytesImported: 0, skipped: 0 };
  const concurrency = Math.max(1, options.concurrency ?? 8);
  const queue = new PQueue({ concurrency });
  let failure: unknown;
  const meter = new ProgressMeter(manifest.volumes.reduce((sum, v) => sum + v.sizeBytes, 0), { onProgress: options.onProgress });

  const store = async (hash: string, data: Buffer) => {
    if (await repo.hasChunk(hash, signal)) {
      report.skipped++;
      return;
    }
    await repo.putChunk(hash, data, signal);
    report.imported++;
    report.bytesImported += data.byteLength;
  };

  const walk = await walkVolumes(device, {
    signal,
    buffers: concurrency + 1,
    onBytes: (bytes) => meter.add(bytes),
    onChunk: async (hash, data, release) => {
      if (failure !== undefined || !needed.has(hash) || handled.has(hash)) {
        release();
        return;
      }
      handled.add(hash);
      queue
        .add(() => store(hash, data))
        .catch((err: unknown) => {
          handled.delete(hash);
          failure ??= err;
        })
        .finally(release);
      await queue.onSizeLessThan(1); // the next chunk is read when a slot is free
    },
    onCorrupt: (hash, reason, volume) => corrupt.push({ hash, volume, reason }),
  }).finally(() => queue.onIdle()); // chunks under way finish (or fail), whatever ended the walk
  if (failure !== undefined) throw failure;
  throwIfAborted(signal);
  meter.flush();

  // Chunks no volume delivered may be in the store already (an earlier import, another seed).
  let missing: string[] = [];
  for (const hash of needed) {
    if (handled.has(hash)) continue;
    if (await repo.hasChunk(hash, signal)) report.skipped++;
    else missing.push(hash);
  }
  let repaired = 0;
  if (missing.length > 0 && options.repairFrom) {
    const result = await fetchChunks(repo, options.repairFrom, missing, concurrency, signal);
    repaired = result.fetched;
    missing = result.missing;
  }
  // A volume changed after the export is not trusted, even though its chunks verify.
  const tampered = walk.volumes.filter((v) => v.tampered).map((v) => v.name);
  const complete = missing.length === 0 && tampered.length === 0;
  const manifests = complete ? await writeManifests(repo, manifest, signal) : [];
  return {
    seedId: manifest.seedId,
    store: repo.store.location,
    chunksNeeded: needed.size,
    ...report,
    repaired,
    corrupt,
    missing,
    volumes: walk.volumes,
    tampered,
    complete,
    manifests,
    elapsedMs: Date.now() - started,
  };
}

export interface RepairSeedOptions {
  deviceDir: string;
  /** The destination store, where an import left chunks missing. */
  repo: Repository;
  /** A store at the source that holds the chunks. */
  from: Repository;
  concurrency?: number;
  signal?: AbortSignal;
}

export interface RepairSeedReport {
  seedId: string;
  chunksNeeded: number;
  /** Chunks fetched (verified) from the source store. */
  repaired: number;
  /** Chunks in neither store. */
  missing: string[];
  complete: boolean;
  manifests: SeedManifestWritten[];
}

/**
 * Completes an import over the network: every chunk the seed's disks name that the
 * destination lacks is read from `from` (its SHA-256 checked) and stored; then the manifests.
 * Needs only the device's `seed.json` (no volume, no key).
 */
export async function repairSeed(options: RepairSeedOptions): Promise<RepairSeedReport> {
  const { repo, signal } = options;
  const { manifest } = await openSeedDevice(options.deviceDir, undefined, false);
  const needed = seedChunkHashes(manifest);
  const lacking: string[] = [];
  for (const hash of needed) if (!(await repo.hasChunk(hash, signal))) lacking.push(hash);
  const { fetched, missing } = await fetchChunks(repo, options.from, lacking, Math.max(1, options.concurrency ?? 4), signal);
  const manifests = missing.length === 0 ? await writeManifests(repo, manifest, signal) : [];
  return { seedId: manifest.seedId, chunksNeeded: needed.size, repaired: fetched, missing, complete: missing.length === 0, manifests };
}

async function fetchChunks(repo: Repository, from: Repository, hashes: string[], concurrency: number, signal?: AbortSignal): Promise<{ fetched: number; missing: string[] }> {
  const missing: string[] = [];
  let fetched = 0;
  const fetchChunk = async (hash: string) => {
    let data: Buffer;
    try {
      data = await from.getChunk(hash, signal); // verified against its name
    } catch (err) {
      if (err instanceof FerryError && (err.code === 'not-found' || err.code === 'checksum-mismatch')) {
        missing.push(hash);
        return;
      }
      throw err;
    }
    await repo.putChunk(hash, data, signal);
    fetched++;
  };
  await forEachConcurrently(hashes, concurrency, fetchChunk, signal);
  return { fetched, missing: missing.sort() };
}

/** Writes each disk's manifest; every chunk it names is durable in the store by now. */
async function writeManifests(repo: Repository, manifest: SeedManifest, signal?: AbortSignal): Promise<SeedManifestWritten[]> {
  const written: SeedManifestWritten[] = [];
  for (const disk of manifest.disks) {
    const id = await repo.putManifest(disk.manifest, signal);
    if (id !== disk.manifestId) throw new FerryError('internal', `disk ${disk.id}: the manifest stored as ${id}, the seed says ${disk.manifestId}`);
    written.push({ diskId: disk.id, manifestId: id, epoch: disk.manifest.epoch });
  }
  return written;
}
