import { afterAll, beforeAll, expect, it } from 'vitest';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FileDevice, isFerryError } from '../../src/core/index.js';
import { tempDir } from '../support/temp.js';

let dir: { path: string; cleanup: () => Promise<void> };
beforeAll(async () => (dir = await tempDir()));
afterAll(async () => dir.cleanup());

it('reads, writes, zeroes and trims at positions, and creates sparse files', async () => {
  const path = join(dir.path, 'a.img');
  const dev = await FileDevice.open(path, { createSizeBytes: 1024 * 1024 });
  expect((await stat(path)).blocks).toBe(0);
  await dev.write(Buffer.alloc(4096, 0xab), 8192);
  await dev.write(Buffer.alloc(512, 0xcd), 1024 * 1024 - 512, { fua: true });
  await dev.writeZeroes(8192 + 1024, 1024);
  await dev.trim(8192, 512);
  const back = Buffer.alloc(4096);
  await dev.read(back, 8192);
  const expected = Buffer.alloc(4096, 0xab);
  expected.fill(0, 1024, 2048).fill(0, 0, 512);
  expect(back.equals(expected)).toBe(true);
  await dev.close();
  const file = await readFile(path);
  expect(file.subarray(1024 * 1024 - 512).equals(Buffer.alloc(512, 0xcd))).toBe(true);
});

it('refuses IO outside the disk, naming the range', async () => {
  const dev = await FileDevice.open(join(dir.path, 'b.img'), { createSizeBytes: 4096 });
  const err = await dev.read(Buffer.alloc(512), 4096 - 256).catch((e: unknown) => e);
  expect(isFerryError(err, 'bad-input')).toBe(true);
  expect(String(err)).toContain('3840+512');
  await expect(dev.write(Buffer.alloc(1), -1)).rejects.toThrow(/outside the disk/);
  await dev.close();
});

it('refuses sizes that are not a multiple of 512, a wrong expected size, and writes when read-only', async () => {
  const odd = join(dir.path, 'odd.img');
  await writeFile(odd, Buffer.alloc(1000));
  await expect(FileDevice.open(odd)).rejects.toThrow(/multiple of 512.*1000/);
  const ok = join(dir.path, 'ok.img');
  await writeFile(ok, Buffer.alloc(2048));
  await expect(FileDevice.open(ok, { expectSizeBytes: 4096 })).rejects.toThrow(/2048 bytes, expected exactly 4096/);
  const ro = await FileDevice.open(ok, { readOnly: true });
  const err = await ro.write(Buffer.alloc(512), 0).catch((e: unknown) => e);
  expect(isFerryError(err, 'invalid-state')).toBe(true);
  await ro.close();
  const missing = await FileDevice.open(join(dir.path, 'nope.img')).catch((e: unknown) => e);
  expect(isFerryError(missing, 'not-found')).toBe(true);
});

it('writes data given in pieces as one run of bytes, inline, with FUA (threadpool) and with FUA alone (inline)', async () => {
  const path = join(dir.path, 'pieces.img');
  const dev = await FileDevice.open(path, { createSizeBytes: 1024 * 1024 });
  const whole = Buffer.from(Array.from({ length: 300 * 1024 }, (_, i) => (i * 31 + 7) & 0xff));
  const cuts = [0, 1, 4096, 4100, 65536, 200 * 1024, whole.length];
  const pieces = cuts.slice(1).map((end, i) => whole.subarray(cuts[i], end));
  expect(pieces.some((p) => p.length === 1)).toBe(true);
  await dev.write(pieces.slice(0, 3), 512); // small: inline
  await dev.write(pieces, 400 * 1024, { fua: true }); // FUA: through the threadpool, then fdatasync
  await dev.write(pieces.slice(0, 3), 900 * 1024, { fua: true, alone: true }); // alone: write and fdatasync inline
  await dev.flush({ alone: true });
  await dev.close();
  const file = await readFile(path);
  expect(file.subarray(512, 512 + cuts[3]!).equals(whole.subarray(0, cuts[3]))).toBe(true);
  expect(file.subarray(400 * 1024, 400 * 1024 + whole.length).equals(whole)).toBe(true);
  expect(file.subarray(900 * 1024, 900 * 1024 + cuts[3]!).equals(whole.subarray(0, cuts[3]))).toBe(true);
  expect(file.subarray(0, 512).equals(Buffer.alloc(512))).toBe(true);
});

it('refuses a durable write or flush alone after close, as it does on the threadpool', async () => {
  const dev = await FileDevice.open(join(dir.path, 'closed.img'), { createSizeBytes: 4096 });
  await dev.close();
  await expect(dev.write(Buffer.alloc(512), 0, { fua: true, alone: true })).rejects.toThrow(/closed/);
  await expect(dev.flush({ alone: true })).rejects.toThrow(/closed/);
  await expect(dev.flush()).rejects.toThrow(/closed/);
});
