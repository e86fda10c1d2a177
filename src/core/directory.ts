/**
 * `mkdir -p`, one level at a time. Node 20's recursive mkdir never returns where the
 * filesystem refuses to create anything (a path under /proc): libuv retries it forever and
 * keeps a core busy. Made a level at a time, such a path fails at once with the errno of
 * the level that could not be made, and the caller says which object it was for.
 */
import { mkdirSync, statSync } from 'node:fs';
import { mkdir, stat } from 'node:fs/promises';
import { dirname } from 'node:path';

/** Makes `path` and its missing parents (new ones with `mode`: private by default); nothing if it exists. */
export async function makeDirectory(path: string, mode = 0o700): Promise<void> {
  const missing: string[] = [];
  for (let dir = path; !(await stat(dir).then(() => true, () => false)); dir = dirname(dir)) {
    missing.unshift(dir);
    if (dirname(dir) === dir) break;
  }
  for (const dir of missing) {
    await mkdir(dir, { mode }).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'EEXIST') throw err;
    });
  }
}

export function makeDirectorySync(path: string, mode = 0o700): void {
  const missing: string[] = [];
  for (let dir = path; !exists(dir); dir = dirname(dir)) {
    missing.unshift(dir);
    if (dirname(dir) === dir) break;
  }
  for (const dir of missing) {
    try {
      mkdirSync(dir, { mode });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
  }
}

function exists(path: string): boolean {
  try {
    statSync(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * Runs `bind` (a server's listen on a unix socket path) with the umask 077, so the socket is
 * private to its owner from the moment it exists: a chmod after listening leaves a window in
 * which anyone may connect. listen() binds before it returns, so the umask is put back at once.
 */
export function bindPrivately<T>(bind: () => T): T {
  const previous = process.umask(0o077);
  try {
    return bind();
  } finally {
    process.umask(previous);
  }
}
