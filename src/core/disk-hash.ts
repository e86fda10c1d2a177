/** SHA-256 of a whole disk, read sequentially in bounded memory. */
import { createHash } from 'node:crypto';
import type { BlockDevice } from './block-device.js';
import { throwIfAborted } from './errors.js';

const readBytes = 4 * 1024 * 1024;

export interface DiskDigest {
  sizeBytes: number;
  sha256: string;
}

export async function hashDisk(disk: BlockDevice, signal?: AbortSignal): Promise<DiskDigest> {
  const hash = createHash('sha256');
  const buf = Buffer.allocUnsafe(Math.min(readBytes, disk.sizeBytes));
  for (let offset = 0; offset < disk.sizeBytes; offset += readBytes) {
    throwIfAborted(signal);
    const part = buf.subarray(0, Math.min(readBytes, disk.sizeBytes - offset));
    await disk.read(part, offset);
    hash.update(part);
  }
  return { sizeBytes: disk.sizeBytes, sha256: hash.digest('hex') };
}
