/**
 * Deallocating a range of a file (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE): it then reads
 * as zeros and takes no space. Node has no fallocate(2), so util-linux's `fallocate` does it
 * (present on every Debian system); a trim is rare and large, so a process per trim costs
 * little. Resolves false where it cannot be done (no `fallocate`, a filesystem without hole
 * punching): the caller writes zeros instead.
 */
import { execFile } from 'node:child_process';

export function punchHole(path: string, offset: number, length: number): Promise<boolean> {
  return new Promise((resolve) => {
    execFile('fallocate', ['--punch-hole', '--keep-size', '--offset', String(offset), '--length', String(length), path], { timeout: 60_000 }, (err) => resolve(err === null));
  });
}
