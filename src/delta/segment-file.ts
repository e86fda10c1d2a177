/**
 * Whole positioned reads for the journal's segment files (the OS may return short counts);
 * writes use core's writeFully.
 */
import type { FileHandle } from 'node:fs/promises';

/** Reads exactly `length` bytes at `position`, or fewer only at the end of the file. */
export async function readAt(handle: FileHandle, position: number, length: number): Promise<Buffer> {
  const buf = Buffer.allocUnsafe(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await handle.read(buf, done, length - done, position + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done === length ? buf : buf.subarray(0, done);
}
