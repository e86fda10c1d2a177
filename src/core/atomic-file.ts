/**
 * Small files replaced whole and atomically (state files): written under a temporary name,
 * synced, renamed over the old one, and the directory synced, so after a crash the path
 * holds the old contents or the new, never a mix, and the rename itself is durable.
 */
import { rename, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { fsyncDirectory } from './file-device.js';

export async function writeFileAtomic(path: string, data: string | Uint8Array, options: { mode?: number } = {}): Promise<void> {
  const temp = `${path}.tmp`;
  await writeFile(temp, data, { flush: true, mode: options.mode });
  await rename(temp, path);
  await fsyncDirectory(dirname(path));
}
