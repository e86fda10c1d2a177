// Benchmark hook for scripts/bench/nbd-serve.mjs: "capture on". Wraps the disk in the capture
// filter over a streaming change tracker, so every write is recorded in the journal (after the
// disk write, before the ack) exactly as in production.
//
// The journal lives in a temporary directory next to the image (same filesystem), with a hard
// limit large enough never to fall back to the bitmap during a run. To measure the cost of
// capture without a network, sealed segments are released as soon as they are sealed: an
// infinitely fast delta shipper. Uses the built code (run `npm run build` first).
//
//   node scripts/bench/nbd-serve.mjs --image disk.img --socket nbd.sock --hook scripts/bench/lib/capture-hook.mjs
import { mkdtempSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';

const root = new URL('../../../', import.meta.url);
const { CaptureFilter, ChangeTracker } = await import(new URL('dist/delta/index.js', root).href);

export default async function captureHook(disk, { logger }) {
  const base = typeof disk.path === 'string' ? dirname(disk.path) : undefined;
  const dir = mkdtempSync(join(base ?? '/tmp', 'ferry-capture-'));
  const tracker = await ChangeTracker.open({
    dir,
    sizeBytes: disk.sizeBytes,
    mode: 'streaming',
    journal: { hardLimitBytes: 64 * 1024 ** 3 },
    logger,
  });
  let released = 0;
  let releasedBytes = 0;
  tracker.on('sealed', (segment) => {
    released++;
    releasedBytes += segment.sizeBytes;
    tracker.release(segment).catch((err) => logger.error('capture hook: release failed', { reason: err.message }));
  });
  tracker.on('mode', (change) => logger.warn('capture hook: tracker changed mode', { ...change }));
  const filter = new CaptureFilter(disk, tracker);
  const close = filter.close.bind(filter);
  filter.close = async () => {
    await close();
    await tracker.close().catch(() => {});
    process.stderr.write(`capture ${JSON.stringify({ mode: tracker.mode, consistent: tracker.consistent, nextSeq: tracker.currentSeq, releasedSegments: released, releasedBytes })}\n`);
    rmSync(dir, { recursive: true, force: true });
  };
  // A server killed without SIGTERM still leaves no journal behind.
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  return filter;
}
