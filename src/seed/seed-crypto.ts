/**
 * Encryption at rest for seed devices: AES-256-GCM per chunk. The key comes from a key file
 * (HKDF-SHA256) or a passphrase (scrypt), with a per-seed salt kept in the manifest; the key
 * itself is never written to the device. The manifest keeps only a fingerprint (an HMAC
 * under a key derived for that purpose alone), so a wrong key is told apart from damage.
 *
 * A sealed chunk is nonce (12 random bytes) || ciphertext || tag (16 bytes); the entry's
 * name (`chunks/<hh>/<sha256 of the plaintext>`) is the additional authenticated data, so
 * a chunk cannot be moved to another name without failing authentication.
 */
import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes, scryptSync } from 'node:crypto';
import { FerryError } from '../core/index.js';
import type { SeedEncryption, SeedKdf } from './device-manifest.js';

/** Where the key comes from: the bytes of a key file, or a passphrase. */
export type SeedKey = { keyFile: Uint8Array } | { passphrase: string };

export const sealOverheadBytes = 12 + 16;
const scryptDefaults = { N: 2 ** 15, r: 8, p: 1 };

export class ChunkCipher {
  private constructor(
    private readonly key: Buffer,
    private readonly macKey: Buffer,
  ) {}

  /** Derives the key for a new seed: a fresh salt, and the parameters to record. */
  static create(source: SeedKey): { cipher: ChunkCipher; encryption: SeedEncryption } {
    const kdf: SeedKdf =
      'passphrase' in source
        ? { name: 'scrypt', salt: randomBytes(32).toString('hex'), ...scryptDefaults }
        : { name: 'hkdf-sha256', salt: randomBytes(32).toString('hex') };
    const { key, macKey, fingerprint } = derive(source, kdf);
    return { cipher: new ChunkCipher(key, macKey), encryption: { algorithm: 'aes-256-gcm', kdf, keyFingerprint: fingerprint } };
  }

  /** Derives the key of an existing seed; a key whose fingerprint differs is refused. */
  static open(source: SeedKey, encryption: SeedEncryption, where: string): ChunkCipher {
    const { key, macKey, fingerprint } = derive(source, encryption.kdf);
    if (fingerprint !== encryption.keyFingerprint) {
      throw new FerryError(
        'bad-input',
        `wrong key: fingerprint mismatch for ${where} (the seed was encrypted with key ${encryption.keyFingerprint}, the ${'passphrase' in source ? 'passphrase' : 'key file'} given is ${fingerprint})`,
      );
    }
    return new ChunkCipher(key, macKey);
  }

  /** HMAC-SHA256 of a seed manifest's text: only a holder of the key can make one that verifies. */
  mac(text: string): string {
    return createHmac('sha256', this.macKey).update(text).digest('hex');
  }

  seal(name: string, plaintext: Uint8Array): Buffer {
    const nonce = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.key, nonce);
    cipher.setAAD(Buffer.from(name));
    const out = Buffer.allocUnsafe(plaintext.byteLength + sealOverheadBytes);
    nonce.copy(out, 0);
    let at = 12;
    at += cipher.update(plaintext).copy(out, at);
    at += cipher.final().copy(out, at);
    cipher.getAuthTag().copy(out, at);
    return out;
  }

  /** Decrypts and authenticates; `where` names the entry for the error. */
  open(name: string, sealed: Uint8Array, where: string): Buffer {
    const bytes = Buffer.from(sealed.buffer, sealed.byteOffset, sealed.byteLength);
    if (bytes.length < sealOverheadBytes) throw new FerryError('checksum-mismatch', `${where} is too short to be an encrypted chunk (${bytes.length} bytes)`);
    const decipher = createDecipheriv('aes-256-gcm', this.key, bytes.subarray(0, 12));
    decipher.setAAD(Buffer.from(name));
    decipher.setAuthTag(bytes.subarray(bytes.length - 16));
    const body = decipher.update(bytes.subarray(12, bytes.length - 16));
    try {
      decipher.final();
    } catch (err) {
      throw new FerryError('checksum-mismatch', `${where} fails authentication: damaged or altered`, { cause: err });
    }
    return body;
  }
}

function derive(source: SeedKey, kdf: SeedKdf): { key: Buffer; macKey: Buffer; fingerprint: string } {
  const salt = Buffer.from(kdf.salt, 'hex');
  let master: Buffer;
  if (kdf.name === 'scrypt') {
    if (!('passphrase' in source)) throw new FerryError('bad-input', 'key: this seed was encrypted with a passphrase; give --passphrase-file, not --key-file');
    if (source.passphrase.length === 0) throw new FerryError('bad-input', 'passphrase: expected at least one character, received an empty passphrase');
    const { N = scryptDefaults.N, r = scryptDefaults.r, p = scryptDefaults.p } = kdf;
    master = scryptSync(source.passphrase, salt, 32, { N, r, p, maxmem: 256 * N * r + 1024 * 1024 });
  } else {
    if (!('keyFile' in source)) throw new FerryError('bad-input', 'key: this seed was encrypted with a key file; give --key-file, not --passphrase-file');
    if (source.keyFile.byteLength < 16) {
      throw new FerryError('bad-input', `key file: expected at least 16 bytes (e.g. head -c 32 /dev/urandom), received ${source.keyFile.byteLength}`);
    }
    master = Buffer.from(hkdfSync('sha256', source.keyFile, salt, 'ferry-seed master key', 32));
  }
  const key = Buffer.from(hkdfSync('sha256', master, salt, 'ferry-seed aes-256-gcm chunk key', 32));
  const macKey = Buffer.from(hkdfSync('sha256', master, salt, 'ferry-seed manifest hmac-sha256 key', 32));
  const check = Buffer.from(hkdfSync('sha256', master, salt, 'ferry-seed key fingerprint', 32));
  const fingerprint = createHmac('sha256', check).update('ferry-seed key check v1').digest('hex').slice(0, 32);
  return { key, macKey, fingerprint };
}
