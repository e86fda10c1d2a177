/**
 * A copy killed half-way (SIGKILL, no chance to clean up) and re-run continues: the re-run
 * uploads exactly the chunks that are missing, none twice, and the result restores exactly.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { FileDevice } from '../../src/core/index.js';
import { copyDisk, restoreDisk } from '../../src/migrate/index.js';
import { FileStore, Repository } from '../../src/store/index.js';
import { ferry, startFerry } from '../support/cli.js';
import { CountingStore } from '../support/counting-store.js';
import { makeSparseImage, sha256File } from '../support/images.js';
import { tempDir } from '../support/temp.js';

let dir: { path: string; cleanup: () => Promise<void> };
beforeAll(async () => (dir = await tempDir()));
afterAll(async () => dir.cleanup());

async function storedChunks(storeDir: string): Promise<Set<string>> {
  const keys = new Set<string>();
  for await (const key of new FileStore(storeDir).list('chunks/')) keys.add(key);
  return keys;
}

it('a killed copy, re-run, uploads no chunk twice and restores byte-identical', async () => {
  const image = join(dir.path, 'disk.img');
  const storeDir = join(dir.path, 'store');
  await makeSparseImage(image, 64 * 1024 * 1024, 7, 0.8);

  // Slow the first run down so that it is surely killed in the middle.
  const { child, done } = startFerry(['copy', image, '--store', `file:${storeDir}`, '--chunk-size', '1M', '--rate', '10M/s', '-q']);
  for (let i = 0; i < 300; i++) {
    await new Promise((r) => setTimeout(r, 50));
    const shards = await readdir(join(storeDir, 'chunks')).catch(() => []);
    if (shards.length >= 8) break;
  }
  child.kill('SIGKILL');
  const killed = await done;
  expect(killed.code).toBe(null); // it died by the signal, not by finishing
  const before = await storedChunks(storeDir);
  expect(before.size).toBeGreaterThan(0);

  const counting = new CountingStore(new FileStore(storeDir));
  const repo = await Repository.open(counting);
  const disk = await FileDevice.open(image, { readOnly: true });
  const { manifestId, manifest } = await copyDisk({ repo, disk, diskName: 'disk.img' });
  await disk.close();

  const rerunPuts = counting.puts.filter((k) => k.startsWith('chunks/'));
  const needed = new Set(manifest.chunks.map(([, hash]) => `chunks/${hash.slice(0, 2)}/${hash}`));
  expect(before.size).toBeLessThan(needed.size); // the kill really was half-way
  expect(rerunPuts.filter((k) => before.has(k))).toEqual([]); // nothing uploaded twice
  expect(new Set(rerunPuts).size).toBe(rerunPuts.length);
  expect(new Set([...before, ...rerunPuts])).toEqual(needed); // and nothing missing

  const restored = join(dir.path, 'restored.img');
  await restoreDisk({ repo, manifestId, destPath: restored });
  expect(await sha256File(restored)).toBe(await sha256File(image));
});

it('the CLI copies, restores and verifies, with exit codes by error code', async () => {
  const image = join(dir.path, 'cli.img');
  const other = join(dir.path, 'cli-other.img');
  const restored = join(dir.path, 'cli-restored.img');
  const store = `file:${join(dir.path, 'cli-store')}`;
  await makeSparseImage(image, 12 * 1024 * 1024, 8);
  await makeSparseImage(other, 12 * 1024 * 1024, 9);

  const copy = await ferry(['copy', image, '--store', store, '-q']);
  expect(copy.code).toBe(0);
  const manifestId = copy.stdout.trim();
  expect(manifestId).toMatch(/^[0-9a-f]{64}$/);

  const restore = await ferry(['restore', '--store', store, '--manifest', manifestId.slice(0, 12), restored, '-q']);
  expect(restore.code).toBe(0);
  expect(await sha256File(restored)).toBe(await sha256File(image));

  expect((await ferry(['verify', image, restored, '-q'])).code).toBe(0);
  expect((await ferry(['verify', restored, '--store', store, '--manifest', manifestId, '-q'])).code).toBe(0);
  const different = await ferry(['verify', image, other, '-q']);
  expect(different.code).toBe(1);
  expect(different.stdout).toContain('DIFFERENT');

  const badRate = await ferry(['copy', image, '--store', store, '--rate', 'fast']);
  expect(badRate.code).toBe(2);
  expect(badRate.stderr).toContain('--rate');
  expect(badRate.stderr).toContain('"fast"');

  const badStore = await ferry(['copy', image, '--store', 'ftp://x']);
  expect(badStore.code).toBe(2);
  expect(badStore.stderr).toContain('ftp://x');

  const missing = await ferry(['restore', '--store', store, '--manifest', 'abcdef0123', join(dir.path, 'x.img')]);
  expect(missing.code).toBe(3);
  expect(missing.stderr).toContain('abcdef0123');

  const help = await ferry(['copy', '--help']);
  expect(help.code).toBe(0);
  expect(help.stdout).toContain('Usage: ferry copy');
});
