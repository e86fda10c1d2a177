/**
 * Files replaced whole and atomically (state files, a journal segment written from memory):
 * written under a temporary name, synced, renamed over the old one, and the directory synced,
 * so after a crash the path holds the old contents or the new, never a mix, and the rename
 * itself is durable.
 */
import { open, readFile, rename, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { WriteData } from './block-device.js';
import { FerryError, asFerryError } from './errors.js';
import { fsyncDirectory } from './file-device.js';
import { writeFully } from './positioned-write.js';

export interface WriteFileAtomicOptions {
  /** Permissions of a newly created file (before the umask). Default 0o600: state is private. */
  mode?: number;
  /**
   * Default true. False leaves the directory's sync to the caller (who syncs once for several
   * files, or does not need the rename durable yet).
   */
  syncDirectory?: boolean;
  /**
   * Asked once the temporary file is durable, just before the rename: false deletes it and
   * leaves `path` as it was.
   */
  commit?: () => boolean;
}

/** Writes `data` to `path` atomically; resolves true once renamed, false if `commit` said no. */
export async function writeFileAtomic(path: string, data: string | WriteData, options: WriteFileAtomicOptions = {}): Promise<boolean> {
  const temp = `${path}.tmp`;
  const handle = await open(temp, 'w', options.mode ?? 0o600);
  try {
    await writeFully(handle, typeof data === 'string' ? Buffer.from(data) : data, 0);
    await handle.datasync();
  } catch (err) {
    await handle.close().catch(() => {});
    await unlink(temp).catch(() => {});
    throw err;
  }
  await handle.close();
  if (options.commit?.() === false) {
    await unlink(temp);
    return false;
  }
  await rename(temp, path);
  if (options.syncDirectory ?? true) await fsyncDirectory(dirname(path));
  return true;
}

/**
 * The JSON a state file holds, or undefined if there is no file; contents that do not parse
 * are 'checksum-mismatch', named `${what} ${path}`.
 */
export async function readJsonFile(path: string, what: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw asFerryError(err, 'io');
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new FerryError('checksum-mismatch', `${what} ${path} is damaged`, { cause: err });
  }
}
