/**
 * `seed verify`: checks a seed device alone, without a store: `seed.json` (checksum,
 * version), every volume's size and SHA-256 and label, every entry's name and type, every
 * chunk's SHA-256 (after decrypting, if the key is given), and that every chunk the disks
 * name is on the device.
 */
import { ProgressMeter, throwIfAborted, type Progress } from '../core/index.js';
import { seedChunkHashes } from './device-manifest.js';
import { openSeedDevice, walkVolumes, type VolumeCheck } from './device.js';
import type { SeedKey } from './seed-crypto.js';

export interface VerifySeedOptions {
  deviceDir: string;
  key?: SeedKey;
  signal?: AbortSignal;
  onProgress?: (progress: Progress) => void;
}

export interface CorruptChunk {
  hash: string;
  volume: string;
  reason: string;
}

export interface VerifySeedReport {
  seedId: string;
  encrypted: boolean;
  disks: Array<{ id: string; manifestId: string; sizeBytes: number; epoch: number; chunks: number }>;
  volumes: VolumeCheck[];
  chunksChecked: number;
  /** Encrypted seed verified without its key: chunk contents were not checked. */
  chunksUnchecked: number;
  corrupt: CorruptChunk[];
  /** Chunks the disks name that no volume holds intact. */
  missing: string[];
  ok: boolean;
}

export async function verifySeed(options: VerifySeedOptions): Promise<VerifySeedReport> {
  const device = await openSeedDevice(options.deviceDir, options.key, false);
  const { manifest } = device;
  const needed = seedChunkHashes(manifest);
  const good = new Set<string>();
  const corrupt: CorruptChunk[] = [];
  const seen = new Set<string>();
  const meter = new ProgressMeter(manifest.volumes.reduce((sum, v) => sum + v.sizeBytes, 0), { onProgress: options.onProgress });
  const walk = await walkVolumes(device, {
    signal: options.signal,
    onBytes: (bytes) => meter.add(bytes),
    onChunk: (hash, _data, release) => {
      release();
      good.add(hash);
    },
    onCorrupt: (hash, reason, volume) => corrupt.push({ hash, volume, reason }),
  });
  throwIfAborted(options.signal);
  meter.flush();
  for (const v of walk.volumes) seen.add(v.name);
  const missing = walk.unchecked > 0 ? [] : [...needed].filter((h) => !good.has(h));
  return {
    seedId: manifest.seedId,
    encrypted: manifest.encryption !== null,
    disks: manifest.disks.map((d) => ({ id: d.id, manifestId: d.manifestId, sizeBytes: d.manifest.disk.sizeBytes, epoch: d.manifest.epoch, chunks: d.manifest.chunks.length })),
    volumes: walk.volumes,
    chunksChecked: good.size + corrupt.length,
    chunksUnchecked: walk.unchecked,
    corrupt,
    missing,
    ok: walk.volumes.every((v) => v.ok) && corrupt.length === 0 && missing.length === 0,
  };
}
