/** Small helpers over byte buffers that the data path uses everywhere. */
import { createHash } from 'node:crypto';

/** Lower-case hex SHA-256 of the bytes. */
export function sha256Hex(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

const zeroPage = Buffer.alloc(64 * 1024);

/** A shared, read-only buffer of zeros at least `length` long (callers must not write it). */
export function zeros(length: number): Buffer {
  return length <= zeroPage.length ? zeroPage.subarray(0, length) : Buffer.alloc(length);
}

/** True if every byte is zero; compares against a zero page with memcmp. */
export function isAllZero(data: Uint8Array): boolean {
  const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  for (let at = 0; at < buf.length; at += zeroPage.length) {
    const end = Math.min(buf.length, at + zeroPage.length);
    if (!buf.subarray(at, end).equals(zeroPage.subarray(0, end - at))) return false;
  }
  return true;
}
