#!/usr/bin/env node
// Benchmark helper for scripts/bench/apply: a base copy of IMAGE in a file: store at DIR, as
// disk d0 of a new replication, and COUNT journal deltas after it, each one write extent of
// DELTA_BYTES random bytes at a seeded random offset (aligned to DELTA_BYTES). Uses the built
// code (npm run build first). Prints one JSON line: manifestId, deltas, bytes.
//
//   node scripts/bench/lib/make-deltas.mjs DIR IMAGE COUNT DELTA_BYTES
import { randomFillSync } from 'node:crypto';

const root = new URL('../../../', import.meta.url);
const { FileDevice, newReplicationId } = await import(new URL('dist/core/index.js', root).href);
const { FileStore, Repository } = await import(new URL('dist/store/index.js', root).href);
const { copyDisk } = await import(new URL('dist/migrate/index.js', root).href);
const { putDelta } = await import(new URL('dist/delta/index.js', root).href);

const [dir, image, countText, bytesText] = process.argv.slice(2);
const count = Number(countText);
const deltaBytes = Number(bytesText);
const repo = await Repository.openOrInit(new FileStore(dir), 1024 * 1024);
const disk = await FileDevice.open(image, { readOnly: true });
const replication = newReplicationId();
const { manifestId } = await copyDisk({ repo, disk, diskName: 'd0', epoch: 1, replication });
const { sizeBytes } = disk;
const slots = Math.floor(sizeBytes / deltaBytes);
await disk.close();

// mulberry32, so that a run can be repeated.
let state = 42;
const random = () => {
  state = (state + 0x6d2b79f5) >>> 0;
  let t = Math.imul(state ^ (state >>> 15), state | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};
const put = async (seq) => {
  const data = randomFillSync(Buffer.allocUnsafe(deltaBytes));
  const offset = Math.floor(random() * slots) * deltaBytes;
  await putDelta(repo, 'd0', { kind: 'journal', replication, diskSizeBytes: sizeBytes, seq, endSeq: seq, part: 0, generation: 0, final: false, needsSeq: 0, createdAtMs: Date.now(), extents: [{ kind: 'write', offset, length: deltaBytes, data }] });
};
for (let seq = 1; seq <= count; seq += 16) {
  await Promise.all(Array.from({ length: Math.min(16, count - seq + 1) }, (_, i) => put(seq + i)));
}
console.log(JSON.stringify({ manifestId, deltas: count, bytes: count * deltaBytes }));
