/**
 * The seed device's manifest (`seed.json`): which disks the seed holds (each as a store
 * manifest), which tar volumes carry their chunks, who made it and when, and how chunks are
 * encrypted. Written last, so a device without it holds an unfinished export.
 * docs/FORMAT.md, "Seed devices", describes version 1.
 */
import { FerryError, sha256Hex } from '../core/index.js';
import { checkDiskId, decodeManifest, encodeManifest, type Manifest } from '../store/index.js';

export const seedVersion = 1;
export const seedManifestFile = 'seed.json';
export const seedProgressFile = 'seed-progress.jsonl';
/** The first entry of every volume: which seed and which volume it is. */
export const volumeLabelName = 'ferry-seed-volume.json';

/** `vol-000000.tar`, `vol-000001.tar`, ... */
export function volumeName(index: number): string {
  return `vol-${String(index).padStart(6, '0')}.tar`;
}

export function volumeIndex(name: string): number | undefined {
  const match = /^vol-(\d{6})\.tar$/.exec(name);
  return match ? Number(match[1]) : undefined;
}

export interface SeedKdf {
  /** `scrypt` for a passphrase, `hkdf-sha256` for a key file. */
  name: 'scrypt' | 'hkdf-sha256';
  /** 32 random bytes, hex. */
  salt: string;
  /** scrypt cost parameters. */
  N?: number;
  r?: number;
  p?: number;
}

export interface SeedEncryption {
  algorithm: 'aes-256-gcm';
  kdf: SeedKdf;
  /** HMAC-SHA256 of a fixed label under a key derived for this purpose only (hex, 32 digits). */
  keyFingerprint: string;
}

export interface SeedDiskEntry {
  /** The disk's id (names its deltas in the store). */
  id: string;
  /** SHA-256 of the encoded manifest: its id in any store it is imported into. */
  manifestId: string;
  manifest: Manifest;
}

export interface SeedVolumeEntry {
  name: string;
  sizeBytes: number;
  sha256: string;
  /** Chunk entries in the volume (the label not counted). */
  chunks: number;
}

export interface SeedManifest {
  format: 'ferry-seed';
  version: typeof seedVersion;
  seedId: string;
  createdBy: { hostname: string; ferryVersion: string };
  startedAt: string;
  finishedAt: string;
  volumeSizeBytes: number;
  encryption: SeedEncryption | null;
  disks: SeedDiskEntry[];
  volumes: SeedVolumeEntry[];
  /**
   * Encrypted seeds: HMAC-SHA256, with a key derived from the seed's key, of the compact JSON
   * of every field above: whoever holds the device but not the key cannot change the manifest.
   */
  mac?: string;
  /** SHA-256 of the compact JSON of every other field, in this order (integrity, not authenticity). */
  checksum: string;
}

export interface VolumeLabel {
  format: 'ferry-seed-volume';
  version: typeof seedVersion;
  seedId: string;
  index: number;
}

const hex = (digits: number) => new RegExp(`^[0-9a-f]{${digits}}$`);

export function seedManifestChecksum(manifest: Omit<SeedManifest, 'checksum'> & { checksum?: string }): string {
  const { checksum: _ignored, ...body } = manifest;
  return sha256Hex(Buffer.from(JSON.stringify(body)));
}

/** `seed.json`; an encrypted seed's is authenticated with `cipher` (its `mac`). */
export function encodeSeedManifest(body: Omit<SeedManifest, 'checksum' | 'mac'>, cipher?: { mac(text: string): string }): Buffer {
  if (body.encryption && !cipher) throw new FerryError('internal', 'an encrypted seed manifest needs its key to be authenticated');
  const authenticated = body.encryption ? { ...body, mac: cipher!.mac(JSON.stringify(body)) } : body;
  const manifest: SeedManifest = { ...authenticated, checksum: seedManifestChecksum(authenticated) };
  return Buffer.from(`${JSON.stringify(manifest)}\n`);
}

/** Checks an encrypted seed's manifest against its key: refuses one changed by anyone without it. */
export function authenticateSeedManifest(manifest: SeedManifest, cipher: { mac(text: string): string }, where: string): void {
  const { checksum: _checksum, mac, ...body } = manifest;
  if (mac === undefined || mac !== cipher.mac(JSON.stringify(body))) {
    throw new FerryError('checksum-mismatch', `${where}: ${mac === undefined ? 'no authentication code (mac)' : 'authentication fails'}: the manifest of this encrypted seed was changed by someone without its key`);
  }
}

export function manifestIdOf(manifest: Manifest): string {
  return sha256Hex(encodeManifest(manifest));
}

/** Parses and checks `seed.json`; `where` names it in messages (the device path). */
export function decodeSeedManifest(bytes: Uint8Array, where: string): SeedManifest {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch (err) {
    throw new FerryError('checksum-mismatch', `${where} is not valid JSON (damaged or partly written)`, { cause: err });
  }
  const m = value as Partial<SeedManifest> | null;
  const bad = (what: string) => new FerryError('checksum-mismatch', `${where}: ${what}`);
  if (!m || typeof m !== 'object' || m.format !== 'ferry-seed') {
    throw new FerryError('bad-input', `${where}: format is ${JSON.stringify(m?.format)}, expected "ferry-seed"`);
  }
  if (m.version !== seedVersion) {
    throw new FerryError('unsupported-version', `${where} has seed format version ${JSON.stringify(m.version)}; this ferry reads version ${seedVersion}`);
  }
  if (typeof m.checksum !== 'string' || seedManifestChecksum(m as SeedManifest) !== m.checksum) {
    throw bad(`checksum mismatch: the manifest was changed or damaged after it was written`);
  }
  if (typeof m.seedId !== 'string' || !hex(32).test(m.seedId)) throw bad(`seedId is ${JSON.stringify(m.seedId)}`);
  if (!Number.isSafeInteger(m.volumeSizeBytes) || m.volumeSizeBytes! <= 0) throw bad(`volumeSizeBytes is ${m.volumeSizeBytes}`);
  if (!Array.isArray(m.disks) || m.disks.length === 0) throw bad('disks is not a non-empty list');
  if (!Array.isArray(m.volumes)) throw bad('volumes is not a list');
  const ids = new Set<string>();
  for (const disk of m.disks) {
    checkDiskId(disk.id);
    if (ids.has(disk.id)) throw bad(`disk ${disk.id} is listed twice`);
    ids.add(disk.id);
    const encoded = encodeManifest(disk.manifest);
    decodeManifest(encoded, `${where} disk ${disk.id}`);
    if (sha256Hex(encoded) !== disk.manifestId) throw bad(`disk ${disk.id}: manifestId ${disk.manifestId} does not match its manifest`);
  }
  m.volumes.forEach((v, i) => {
    if (v.name !== volumeName(i) || !Number.isSafeInteger(v.sizeBytes) || !hex(64).test(v.sha256) || !Number.isSafeInteger(v.chunks)) {
      throw bad(`volume entry ${i} is invalid: ${JSON.stringify(v)}`);
    }
  });
  if (m.encryption !== null) {
    const e = m.encryption;
    if (!e || e.algorithm !== 'aes-256-gcm' || !e.kdf || !['scrypt', 'hkdf-sha256'].includes(e.kdf.name) || !hex(64).test(e.kdf.salt) || !hex(32).test(e.keyFingerprint)) {
      throw bad(`encryption is ${JSON.stringify(e)}`);
    }
  }
  return m as SeedManifest;
}

/** Every distinct chunk hash the seed's disks name. */
export function seedChunkHashes(manifest: Pick<SeedManifest, 'disks'>): Set<string> {
  const hashes = new Set<string>();
  for (const disk of manifest.disks) for (const [, hash] of disk.manifest.chunks) hashes.add(hash);
  return hashes;
}

/** `chunks/<hh>/<sha256>`: the store's own key, also the entry's name in a volume. */
export const chunkEntryPattern = /^chunks\/([0-9a-f]{2})\/([0-9a-f]{64})$/;
