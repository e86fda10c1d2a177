/**
 * Positioned writes that write every byte: the OS may write fewer bytes than asked (a short
 * write), and each form here continues from where it stopped until all is written.
 *
 * The callback and promise forms use the callback `fs` functions on a raw fd: one small
 * promise per call however many syscalls it takes, none of FileHandle's per-call allocations
 * (the journal and the file device write at tens of thousands of calls per second).
 */
import { write, writeSync, writev, writevSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { writeDataAfter, writeDataBytes, type WriteData } from './block-device.js';

/** Buffers per writev call: well under IOV_MAX (1024 on Linux). */
const maxIovecs = 512;
/**
 * Bytes per call. The kernel sizes page cache folios by the write, and in a VM whose host
 * takes back the guest's free memory (a balloon with free page reporting) folios of 512 KiB
 * and more come from memory the host must back again, which a write of that size pays for;
 * smaller folios come from memory the guest keeps. Much smaller pieces cost more calls instead.
 */
const maxWriteBytes = 256 * 1024;

/** Writes all of `data` at `position` of `fd`, then calls `done` (with the error, if one). */
export function writeFullyCallback(fd: number, data: WriteData, position: number, done: (err: NodeJS.ErrnoException | null) => void): void {
  const total = writeDataBytes(data);
  let written = 0;
  const step = (err: NodeJS.ErrnoException | null, bytesWritten: number): void => {
    if (err !== null) return done(err);
    written += bytesWritten;
    if (written < total) writeSome(fd, writeDataAfter(data, written), position + written, step);
    else done(null);
  };
  if (total === 0) done(null);
  else writeSome(fd, data, position, step);
}

/** Writes all of `data` at `position`: a FileHandle's fd, or a raw fd. */
export function writeFully(file: FileHandle | number, data: WriteData, position: number): Promise<void> {
  const fd = typeof file === 'number' ? file : file.fd;
  return new Promise<void>((resolve, reject) => writeFullyCallback(fd, data, position, (err) => (err !== null ? reject(err) : resolve())));
}

/** Writes all of `data` at `position`, synchronously (inline IO on the event loop). */
export function writeFullySync(fd: number, data: WriteData, position: number): void {
  const total = writeDataBytes(data);
  if (total === 0) return;
  let written = 0;
  while (written < total) {
    const rest = written === 0 ? data : writeDataAfter(data, written);
    written += rest instanceof Uint8Array ? writeSync(fd, rest, 0, Math.min(rest.byteLength, maxWriteBytes), position + written) : writevSync(fd, batch(rest), position + written);
  }
}

/** One write or writev syscall: some of `data` (at most maxIovecs pieces, maxWriteBytes bytes). */
function writeSome(fd: number, data: WriteData, position: number, callback: (err: NodeJS.ErrnoException | null, bytesWritten: number) => void): void {
  if (data instanceof Uint8Array) write(fd, data, 0, Math.min(data.byteLength, maxWriteBytes), position, callback);
  else writev(fd, batch(data), position, callback);
}

/** The first pieces of `pieces` for one writev: at most maxIovecs of them and maxWriteBytes bytes. */
function batch(pieces: readonly Uint8Array[]): readonly Uint8Array[] {
  let bytes = 0;
  for (let i = 0; i < pieces.length && i < maxIovecs; i++) {
    const piece = pieces[i]!;
    if (bytes + piece.byteLength >= maxWriteBytes) return [...pieces.slice(0, i), piece.subarray(0, maxWriteBytes - bytes)];
    bytes += piece.byteLength;
  }
  return pieces.length > maxIovecs ? pieces.slice(0, maxIovecs) : pieces;
}
