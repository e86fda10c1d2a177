/**
 * A small file system of its own (a tmpfs mount) that tests can fill up and free again, for
 * the "disk full" cases: a journal, a replica or a store whose file system runs out of space.
 * Mounting needs root (or CAP_SYS_ADMIN); where that is missing, `mountSmallFileSystem`
 * resolves undefined and the test says it skipped.
 */
import { mkdir, open, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { run } from './nbd-tools.js';

export interface SmallFileSystem {
  path: string;
  /** Fills every free byte (a filler file), so the next write that needs space fails with ENOSPC. */
  fill(): Promise<void>;
  /** Deletes the filler: the space is back. */
  free(): Promise<void>;
  unmount(): Promise<void>;
}

export async function mountSmallFileSystem(path: string, sizeBytes: number): Promise<SmallFileSystem | undefined> {
  await mkdir(path, { recursive: true });
  const mounted = await run('mount', ['-t', 'tmpfs', '-o', `size=${sizeBytes},mode=0700`, 'tmpfs', path], { allowFailure: true, timeoutMs: 10_000 });
  if (mounted.code !== 0) return undefined;
  const filler = join(path, '.filler');
  return {
    path,
    async fill() {
      const handle = await open(filler, 'a');
      const block = Buffer.alloc(64 * 1024, 0xff);
      try {
        for (;;) await handle.write(block);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
        // The last bytes, smaller than a block.
        for (let n = 32 * 1024; n >= 512; n /= 2) await handle.write(block.subarray(0, n)).catch(() => {});
      } finally {
        await handle.close();
      }
    },
    async free() {
      await rm(filler, { force: true });
    },
    async unmount() {
      await run('umount', ['-l', path], { allowFailure: true, timeoutMs: 10_000 });
    },
  };
}
