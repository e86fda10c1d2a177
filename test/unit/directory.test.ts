import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeDirectory, makeDirectorySync } from '../../src/core/index.js';
import { FileStore } from '../../src/store/index.js';
import { tempDir } from '../support/temp.js';

let dir: { path: string; cleanup: () => Promise<void> };
beforeAll(async () => {
  dir = await tempDir('ferry-directory-');
});
afterAll(async () => {
  await dir.cleanup();
});

describe('makeDirectory', () => {
  it('makes the missing levels with the mode given, and leaves an existing directory alone', async () => {
    const deep = join(dir.path, 'a', 'b', 'c');
    await makeDirectory(deep, 0o700);
    await makeDirectory(deep);
    makeDirectorySync(join(dir.path, 'a', 'd', 'e'), 0o700);
    for (const path of [join(dir.path, 'a'), join(dir.path, 'a', 'b'), deep, join(dir.path, 'a', 'd', 'e')]) {
      const s = await stat(path);
      expect([s.isDirectory(), s.mode & 0o777], path).toEqual([true, 0o700]);
    }
  });

  // Node 20's recursive mkdir never returns there (libuv retries forever).
  it('fails at once where nothing can be made (under /proc)', async () => {
    await expect(makeDirectory('/proc/ferry-test/a/b')).rejects.toMatchObject({ code: 'ENOENT' });
    expect(() => makeDirectorySync('/proc/ferry-test/a/b')).toThrow(expect.objectContaining({ code: 'ENOENT' }));
  });

  it('so a file: store there is unavailable, said at once, instead of a hang', async () => {
    const store = new FileStore('/proc/ferry-test-store');
    await expect(store.put('chunks/ab/x', Buffer.from('data'))).rejects.toMatchObject({ code: 'store-unavailable', message: expect.stringContaining('/proc/ferry-test-store') });
  });
});
