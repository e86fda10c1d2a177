/**
 * Small file helpers the journal's segment files share: whole positioned reads and writes
 * (the OS may return short counts).
 */
import { writev } from 'node:fs';
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

/** Writes all of `buffers` at `position`, retrying short writes. */
export async function writeAllAt(handle: FileHandle, buffers: Buffer[], position: number): Promise<void> {
  let pending = buffers.filter((b) => b.length > 0);
  let at = position;
  while (pending.length > 0) {
    // Keep each call well under IOV_MAX.
    const batch = pending.slice(0, 512);
    const { bytesWritten } = await handle.writev(batch, at);
    at += bytesWritten;
    let skip = bytesWritten;
    const rest: Buffer[] = [];
    for (const buf of pending) {
      if (skip >= buf.length) {
        skip -= buf.length;
      } else {
        rest.push(skip > 0 ? buf.subarray(skip) : buf);
        skip = 0;
      }
    }
    pending = rest;
  }
}

/**
 * Like `writeAllAt`, on a raw fd with the callback `fs.writev`: one promise per call, however
 * many short writes it takes. For the journal's hot path (group-committed records).
 */
export function writevAllAt(fd: number, buffers: Buffer[], position: number): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let pending = buffers.length > maxIovecs ? buffers.slice() : buffers;
    let batch = pending.length > maxIovecs ? pending.slice(0, maxIovecs) : pending;
    let at = position;
    const step = (err: NodeJS.ErrnoException | null, bytesWritten: number): void => {
      if (err !== null) return reject(err);
      at += bytesWritten;
      // Drop what was written; a buffer written in part continues from where it stopped.
      let skip = bytesWritten;
      let i = 0;
      while (i < pending.length && skip >= pending[i]!.length) skip -= pending[i++]!.length;
      if (i === pending.length) return resolve();
      const rest = pending.slice(i);
      if (skip > 0) rest[0] = rest[0]!.subarray(skip);
      pending = rest;
      batch = pending.length > maxIovecs ? pending.slice(0, maxIovecs) : pending;
      writev(fd, batch, at, step);
    };
    writev(fd, batch, at, step);
  });
}

/** Buffers per writev call: well under IOV_MAX (1024 on Linux). */
const maxIovecs = 512;
