import { afterAll, beforeAll, expect, it } from 'vitest';
import { join } from 'node:path';
import { FileDevice } from '../../src/core/index.js';
import { Throttle, copyDisk } from '../../src/migrate/index.js';
import { FileStore, Repository } from '../../src/store/index.js';
import { makeSparseImage } from '../support/images.js';
import { tempDir } from '../support/temp.js';

let dir: { path: string; cleanup: () => Promise<void> };
beforeAll(async () => (dir = await tempDir()));
afterAll(async () => dir.cleanup());

it('a copy of N bytes at a rate of R bytes/s takes at least N/R seconds', async () => {
  const image = join(dir.path, 'dense.img');
  await makeSparseImage(image, 12 * 1024 * 1024, 5, 4); // dense: every chunk holds data
  const repo = await Repository.openOrInit(new FileStore(join(dir.path, 'store')), 1024 * 1024);
  const disk = await FileDevice.open(image, { readOnly: true });
  const rateBytesPerSec = 4_000_000;
  const throttle = new Throttle(rateBytesPerSec);
  const started = performance.now();
  const { stats } = await copyDisk({ repo, disk, diskName: 'dense', throttle });
  const seconds = (performance.now() - started) / 1000;
  await disk.close();
  await throttle.close();
  expect(stats.bytesUploaded).toBeGreaterThan(10 * 1024 * 1024);
  expect(seconds).toBeGreaterThanOrEqual(stats.bytesUploaded / rateBytesPerSec);
});

it('foreground traffic is served before background traffic waiting for the same budget', async () => {
  const throttle = new Throttle(1_000_000);
  const order: string[] = [];
  const background = Array.from({ length: 4 }, (_, i) => throttle.take(50_000, 'background').then(() => order.push(`bg${i}`)));
  const foreground = throttle.take(50_000, 'foreground').then(() => order.push('fg'));
  await Promise.all([...background, foreground]);
  await throttle.close();
  expect(order.indexOf('fg')).toBeLessThan(order.indexOf('bg3'));
  expect(order.indexOf('fg')).toBeLessThanOrEqual(1);
});

it('a rate change applies to takes already waiting', async () => {
  const throttle = new Throttle(10_000); // 2 MB would take 200 s at this rate
  const started = performance.now();
  const waiting = throttle.take(2_000_000);
  setTimeout(() => throttle.setRate(100_000_000), 100);
  await waiting;
  await throttle.close();
  expect(performance.now() - started).toBeLessThan(10_000);
});

it('setRate while takes keep coming changes the delivered rate, up and down', async () => {
  const throttle = new Throttle(1_000_000);
  let stop = false;
  // A steady consumer: 64 KB takes, one after another, as fast as the budget lets them pass.
  const consumer = (async () => {
    while (!stop) await throttle.take(64_000, 'background');
  })();
  const passed = () => throttle.bytesPassed.background;
  const window = async (ms: number) => {
    const [bytes0, t0] = [passed(), performance.now()];
    await new Promise((resolve) => setTimeout(resolve, ms));
    return { bytes: passed() - bytes0, seconds: (performance.now() - t0) / 1000 };
  };

  await window(300); // settle at 1 MB/s
  throttle.setRate(10_000_000);
  const fast = await window(1000);
  throttle.setRate(1_000_000);
  await window(100); // let the piece granted at the old rate go by
  const slow = await window(1000);
  stop = true;
  throttle.setRate(0); // lets the last take through at once
  await consumer;
  await throttle.close();

  // Raised to 10 MB/s: at least half of that got through (a slow machine only delivers less).
  expect(fast.bytes / fast.seconds).toBeGreaterThan(5_000_000);
  // Lowered back to 1 MB/s: N bytes took at least N / rate seconds, less a burst and a piece.
  const slack = 50_000 + 64_000;
  expect(slow.seconds).toBeGreaterThanOrEqual((slow.bytes - slack) / 1_000_000);
  expect(fast.bytes).toBeGreaterThan(3 * slow.bytes);
});
