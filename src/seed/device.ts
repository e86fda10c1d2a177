/**
 * Opening a seed device for reading (verify, import, repair): `seed.json` read and checked,
 * the key checked against its fingerprint, and a walk over every volume that reports each
 * verified chunk, each corrupt one, and each volume that is missing, damaged, or not the
 * one the manifest lists.
 */
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { ChunkHasher, FerryError, VolumeHasher, throwIfAborted } from '../core/index.js';
import { authenticateSeedManifest, decodeSeedManifest, seedManifestFile, seedProgressFile, type SeedManifest } from './device-manifest.js';
import { ChunkCipher, type SeedKey } from './seed-crypto.js';
import { readVolume } from './volume-reader.js';

export interface SeedDevice {
  dir: string;
  manifest: SeedManifest;
  /** Present when the seed is encrypted and the key was given. */
  cipher?: ChunkCipher;
}

/** Reads `seed.json`. With `requireKey`, an encrypted seed without a key is refused. */
export async function openSeedDevice(dir: string, key: SeedKey | undefined, requireKey: boolean): Promise<SeedDevice> {
  const path = join(dir, seedManifestFile);
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new FerryError('io', `${path}: ${(err as Error).message}`, { cause: err });
    const unfinished = await stat(join(dir, seedProgressFile)).catch(() => undefined);
    if (unfinished) throw new FerryError('invalid-state', `${dir} holds an unfinished seed export (${seedProgressFile}, no ${seedManifestFile}): finish it with 'ferry seed export' first`);
    throw new FerryError('not-found', `no seed on ${dir}: ${seedManifestFile} is missing`);
  }
  const manifest = decodeSeedManifest(bytes, path);
  if (!manifest.encryption) return { dir, manifest };
  if (!key) {
    if (requireKey) throw new FerryError('bad-input', `seed ${manifest.seedId} on ${dir} is encrypted: give its key (--key-file or --passphrase-file)`);
    return { dir, manifest };
  }
  const cipher = ChunkCipher.open(key, manifest.encryption, `seed ${manifest.seedId} on ${dir}`);
  authenticateSeedManifest(manifest, cipher, path);
  return { dir, manifest, cipher };
}

export interface VolumeCheck {
  name: string;
  ok: boolean;
  sizeBytes?: number;
  sha256?: string;
  chunks: number;
  problem?: string;
  /**
   * Whole, every chunk in it intact, and yet not the volume that was written (its SHA-256
   * differs from seed.json's): someone changed it after the export.
   */
  tampered?: boolean;
}

export interface WalkOptions {
  signal?: AbortSignal;
  buffers?: number;
  onBytes?: (bytes: number) => void;
  onChunk: (hash: string, data: Buffer, release: () => void, volume: string) => void | Promise<void>;
  onCorrupt: (hash: string, reason: string, volume: string) => void;
}

export interface WalkResult {
  volumes: VolumeCheck[];
  /** Chunk entries not checked (encrypted seed, no key). */
  unchecked: number;
}

/** Reads every volume the manifest lists, in order; problems are reported, not thrown. */
export async function walkVolumes(device: SeedDevice, options: WalkOptions): Promise<WalkResult> {
  const { manifest } = device;
  const chunkSizeBytes = Math.max(...manifest.disks.map((d) => d.manifest.chunkSizeBytes));
  const volumes: VolumeCheck[] = [];
  let unchecked = 0;
  const hashers = { chunk: new ChunkHasher(), volume: new VolumeHasher() };
  try {
    await walk();
  } finally {
    await Promise.all([hashers.chunk.close(), hashers.volume.close()]);
  }
  return { volumes, unchecked };

  async function walk() {
    for (const [index, volume] of manifest.volumes.entries()) {
      throwIfAborted(options.signal);
      const path = join(device.dir, volume.name);
      const info = await stat(path).catch(() => undefined);
      if (!info) {
        volumes.push({ name: volume.name, ok: false, chunks: 0, problem: `volume ${volume.name} is missing from ${device.dir}` });
        continue;
      }
      let corruptHere = 0;
      const result = await readVolume({
        path,
        name: volume.name,
        seedId: manifest.seedId,
        index,
        chunkSizeBytes,
        cipher: device.cipher,
        encrypted: manifest.encryption !== null,
        buffers: options.buffers,
        signal: options.signal,
        onBytes: options.onBytes,
        hashers,
        onChunk: (hash, data, release) => options.onChunk(hash, data, release, volume.name),
        onCorrupt: (hash, reason) => {
          corruptHere++;
          options.onCorrupt(hash, reason, volume.name);
        },
      });
      unchecked += result.unchecked;
      const problems: string[] = [];
      if (result.error) problems.push(result.error.message);
      if (result.sizeBytes !== volume.sizeBytes) {
        problems.push(
          `volume ${volume.name} is ${result.sizeBytes} bytes, the manifest says ${volume.sizeBytes}${result.sizeBytes < volume.sizeBytes ? ' (truncated)' : ''}`,
        );
      }
      const countOk = result.error !== undefined || result.chunks === volume.chunks;
      if (!countOk) problems.push(`volume ${volume.name} holds ${result.chunks} chunks, the manifest says ${volume.chunks}`);
      const altered = result.sizeBytes === volume.sizeBytes && result.sha256 !== volume.sha256;
      // Chunks were checked: in clear, or decrypted and authenticated with the key.
      const checked = manifest.encryption === null || device.cipher !== undefined;
      const tampered = altered && checked && !result.error && corruptHere === 0 && countOk;
      if (altered) {
        problems.push(
          tampered
            ? `volume ${volume.name} has SHA-256 ${result.sha256}, the manifest says ${volume.sha256}: every chunk in it verifies, but it is not the volume that was written (tampered)`
            : `volume ${volume.name} has SHA-256 ${result.sha256}, the manifest says ${volume.sha256} (damaged)`,
        );
      }
      volumes.push({
        name: volume.name,
        ok: problems.length === 0,
        sizeBytes: result.sizeBytes,
        sha256: result.sha256,
        chunks: result.chunks,
        ...(problems.length > 0 ? { problem: problems.join('; ') } : {}),
        ...(tampered ? { tampered } : {}),
      });
    }
  }
}
