/**
 * Reads one tar volume of a seed device, streaming (tar-stream), and checks everything:
 *
 * - the SHA-256 and size of the whole file (compared with the manifest by the caller);
 * - the label entry: the volume belongs to this seed and sits at this position;
 * - every entry: a regular file named `chunks/<hh>/<sha256>`, no bigger than a chunk. A name
 *   that escapes the target (`..`, an absolute path), a link or any other non-regular entry
 *   stops the volume with an error naming the entry and the volume;
 * - every chunk: decrypted (if encrypted) and its SHA-256 compared with its name before it is
 *   handed to `onChunk`. A chunk that fails is reported through `onCorrupt`, and reading
 *   goes on: nothing unverified is handed out, and one bad chunk does not cost the others.
 *
 * Damage that makes the rest unreadable (a bad header, a truncated file) ends the volume;
 * the result says where. Nothing is written anywhere by name: entries are only parsed.
 */
import { createReadStream } from 'node:fs';
import tar from 'tar-stream';
import { ChunkHasher, FerryError, VolumeHasher, asFerryError, sha256Hex, throwIfAborted } from '../core/index.js';
import { chunkEntryPattern, seedVersion, volumeLabelName, type VolumeLabel } from './device-manifest.js';
import { sealOverheadBytes, type ChunkCipher } from './seed-crypto.js';

export interface ReadVolumeOptions {
  path: string;
  /** The volume's name, for messages. */
  name: string;
  seedId: string;
  index: number;
  chunkSizeBytes: number;
  /** Present when the seed is encrypted; `encrypted` without a cipher counts chunks unchecked. */
  cipher?: ChunkCipher;
  encrypted: boolean;
  /** Entry buffers in use at once (a slow `onChunk` holds them); default 2. */
  buffers?: number;
  signal?: AbortSignal;
  /** A verified chunk. Call `release` when done with `data` (the buffer is reused). */
  onChunk: (hash: string, data: Buffer, release: () => void) => void | Promise<void>;
  onCorrupt: (hash: string, reason: string) => void;
  /** Bytes of the file read so far, for progress. */
  onBytes?: (bytes: number) => void;
  /** Worker threads for the SHA-256s, shared across volumes (made and closed here if absent). */
  hashers?: VolumeReadHashers;
}

export interface VolumeReadHashers {
  chunk: ChunkHasher;
  volume: VolumeHasher;
}

/** How far reading may run ahead of the volume's hash (the pieces wait, copied, for the worker). */
const hashAheadBytes = 16 * 1024 * 1024;

export interface ReadVolumeResult {
  sizeBytes: number;
  sha256: string;
  chunks: number;
  /** Chunk entries whose contents were not checked (encrypted, no key). */
  unchecked: number;
  /** Why reading stopped early, if it did: the rest of the volume was not read. */
  error?: FerryError;
}

export async function readVolume(options: ReadVolumeOptions): Promise<ReadVolumeResult> {
  if (!options.hashers) {
    const hashers = { chunk: new ChunkHasher(), volume: new VolumeHasher() };
    try {
      return await readVolume({ ...options, hashers });
    } finally {
      await Promise.all([hashers.chunk.close(), hashers.volume.close()]);
    }
  }
  const { name } = options;
  const where = `volume ${name}`;
  // Both SHA-256s on workers: the chunks' where they lie (shared memory), the volume's from
  // copies of the pieces read, at most hashAheadBytes behind.
  const { chunk: chunkHasher, volume: volumeHasher } = options.hashers;
  let sizeBytes = 0;
  const hashPiece = async (piece: Buffer) => {
    volumeHasher.update(piece);
    sizeBytes += piece.length;
    while (sizeBytes - volumeHasher.hashedBytes > hashAheadBytes) await new Promise<void>((resolve) => (volumeHasher.onHashed = resolve));
  };
  const file = createReadStream(options.path, { highWaterMark: 4 * 1024 * 1024 });
  const extract = tar.extract();
  const feeding = (async () => {
    try {
      for await (const piece of file as AsyncIterable<Buffer>) {
        await hashPiece(piece);
        options.onBytes?.(piece.length);
        if (!extract.write(piece)) {
          await new Promise<void>((resolve) => {
            const done = () => {
              extract.off('drain', done);
              extract.off('close', done);
              resolve();
            };
            extract.on('drain', done);
            extract.on('close', done);
          });
        }
        if (extract.destroyed) break;
      }
      (extract as unknown as { end(): void }).end();
    } catch (err) {
      extract.destroy(err as Error);
    }
  })();

  const maxEntry = options.chunkSizeBytes + (options.encrypted ? sealOverheadBytes : 0);
  // Shared memory: chunks are hashed on a worker thread where they lie.
  const free: Buffer[] = Array.from({ length: options.buffers ?? 2 }, () => Buffer.from(new SharedArrayBuffer(maxEntry)));
  let waiter: (() => void) | undefined;
  const takeBuffer = async (): Promise<Buffer> => {
    while (free.length === 0) await new Promise<void>((resolve) => (waiter = resolve));
    return free.pop()!;
  };
  const giveBack = (buffer: Buffer) => {
    free.push(buffer);
    const wake = waiter;
    waiter = undefined;
    wake?.();
  };

  const result: ReadVolumeResult = { sizeBytes: 0, sha256: '', chunks: 0, unchecked: 0 };
  let entries = 0;
  try {
    for await (const entry of extract) {
      throwIfAborted(options.signal);
      const header = entry.header;
      const entryName = header.name;
      const first = entries++ === 0;
      checkEntry(entryName, header.type, where, first);
      const size = header.size ?? 0;
      if (first) {
        if (size > 4096) throw new FerryError('checksum-mismatch', `${where}: label entry is ${size} bytes, too big`);
        const chunks: Buffer[] = [];
        for await (const piece of entry) chunks.push(piece as Buffer);
        checkLabel(Buffer.concat(chunks), options, where);
        continue;
      }
      if (size > maxEntry) throw new FerryError('checksum-mismatch', `${where}: entry ${JSON.stringify(entryName)} is ${size} bytes, more than a chunk (${maxEntry})`);
      const chunkHash = chunkEntryPattern.exec(entryName)![2]!;
      const buffer = await takeBuffer();
      let at = 0;
      for await (const piece of entry) at += (piece as Buffer).copy(buffer, at);
      const body = buffer.subarray(0, at);
      result.chunks++;
      if (options.encrypted && !options.cipher) {
        result.unchecked++;
        giveBack(buffer);
        continue;
      }
      let plain: Buffer;
      try {
        plain = options.cipher ? options.cipher.open(entryName, body, `chunk ${chunkHash} in ${where}`) : body;
      } catch (err) {
        giveBack(buffer);
        options.onCorrupt(chunkHash, asFerryError(err).message);
        continue;
      }
      const actual = plain === body ? await chunkHasher.hash(plain) : sha256Hex(plain);
      if (actual !== chunkHash || plain.length > options.chunkSizeBytes || plain.length === 0) {
        giveBack(buffer);
        options.onCorrupt(chunkHash, `chunk ${chunkHash} in ${where} is corrupt: its SHA-256 is ${actual}`);
        continue;
      }
      if (plain !== body) giveBack(buffer); // the plaintext is a buffer of its own
      let released = false;
      const release = () => {
        if (released) return;
        released = true;
        if (plain === body) giveBack(buffer);
      };
      await options.onChunk(chunkHash, plain, release);
    }
    if (entries === 0) throw new FerryError('checksum-mismatch', `${where} holds no tar entries (empty or not a tar file)`);
  } catch (err) {
    const error = asFerryError(err, 'checksum-mismatch');
    if (error.code === 'aborted') throw error;
    result.error =
      error.message.startsWith(where) || error.message.includes(` in ${where}`)
        ? error
        : new FerryError(error.code, `${where} is damaged at or before byte ${sizeBytes}: ${error.message}`, { cause: err });
    file.destroy();
    extract.destroy();
  }
  await feeding;
  // Read what is left of the file, so the volume's SHA-256 and size are those of the whole file.
  if (result.error && !options.signal?.aborted) {
    try {
      for await (const piece of createReadStream(options.path, { start: sizeBytes }) as AsyncIterable<Buffer>) await hashPiece(piece);
    } catch {
      // the error already reported says enough
    }
  }
  result.sizeBytes = sizeBytes;
  result.sha256 = await volumeHasher.digest();
  return result;
}

function checkEntry(entryName: string, type: string | null | undefined, where: string, first: boolean): void {
  const shown = JSON.stringify(entryName);
  if (entryName.startsWith('/')) throw new FerryError('checksum-mismatch', `${where}: entry ${shown} is an absolute path: refused (it would escape the target)`);
  if (entryName.split('/').includes('..')) throw new FerryError('checksum-mismatch', `${where}: entry ${shown} escapes the target ("..")`);
  if (type !== 'file') throw new FerryError('checksum-mismatch', `${where}: entry ${shown} is a ${type ?? 'unknown'} entry, not a regular file: refused`);
  if (first) {
    if (entryName !== volumeLabelName) throw new FerryError('checksum-mismatch', `${where}: the first entry is ${shown}, not the volume label ${volumeLabelName}`);
    return;
  }
  const match = chunkEntryPattern.exec(entryName);
  if (!match || match[1] !== match[2]!.slice(0, 2)) throw new FerryError('checksum-mismatch', `${where}: entry ${shown} is not a chunk name (chunks/<hh>/<sha256>)`);
}

function checkLabel(bytes: Buffer, options: ReadVolumeOptions, where: string): void {
  let label: Partial<VolumeLabel>;
  try {
    label = JSON.parse(bytes.toString('utf8')) as Partial<VolumeLabel>;
  } catch (err) {
    throw new FerryError('checksum-mismatch', `${where}: the volume label is not valid JSON`, { cause: err });
  }
  if (label.format !== 'ferry-seed-volume') throw new FerryError('checksum-mismatch', `${where}: the volume label's format is ${JSON.stringify(label.format)}`);
  if (label.version !== seedVersion) throw new FerryError('unsupported-version', `${where}: volume label version ${JSON.stringify(label.version)}; this ferry reads ${seedVersion}`);
  if (label.seedId !== options.seedId) {
    throw new FerryError('checksum-mismatch', `${where} belongs to another seed (${String(label.seedId)}), not to seed ${options.seedId}`);
  }
  if (label.index !== options.index) throw new FerryError('checksum-mismatch', `${where} is volume number ${String(label.index)} of the seed, expected ${options.index}`);
}
