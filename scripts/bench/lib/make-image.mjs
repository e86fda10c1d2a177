#!/usr/bin/env node
// Benchmark helper: writes a raw disk image made of alternating random and zero extents.
//
//   node scripts/bench/lib/make-image.mjs PATH SIZE DATA_EXTENT GAP_EXTENT [holes|zeros]
//
// Sizes in bytes or with K/M/G (binary). From offset 0 the image holds DATA_EXTENT bytes of
// random data, then GAP_EXTENT bytes of zeros, repeated to SIZE. With `zeros` (default) the
// gaps are written as zero bytes, so every byte of the file is allocated and must be read;
// with `holes` they are left as holes (a sparse file).
// Prints one JSON line: sizeBytes, dataBytes, zeroBytes, allocation mode.
import { open } from 'node:fs/promises';
import { randomFillSync } from 'node:crypto';

function size(text) {
  const m = /^(\d+)([KMGT]?)$/i.exec(text ?? '');
  if (!m) throw new Error(`bad size ${JSON.stringify(text)}`);
  return Number(m[1]) * 1024 ** ' KMGT'.indexOf((m[2] || ' ').toUpperCase());
}

const [path, sizeText, dataText, gapText, mode = 'zeros'] = process.argv.slice(2);
if (!path || !['zeros', 'holes'].includes(mode)) {
  process.stderr.write('usage: make-image.mjs PATH SIZE DATA_EXTENT GAP_EXTENT [holes|zeros]\n');
  process.exit(2);
}
const sizeBytes = size(sizeText);
const dataExtent = size(dataText);
const gapExtent = size(gapText);
const piece = 4 * 1024 * 1024;
const random = Buffer.allocUnsafe(piece);
const zero = Buffer.alloc(piece);
let dataBytes = 0;

const handle = await open(path, 'wx', 0o644);
try {
  await handle.truncate(sizeBytes);
  for (let at = 0; at < sizeBytes; ) {
    const dataEnd = Math.min(sizeBytes, at + dataExtent);
    for (; at < dataEnd; ) {
      const n = Math.min(piece, dataEnd - at);
      randomFillSync(random, 0, n);
      await handle.write(random, 0, n, at);
      at += n;
      dataBytes += n;
    }
    const gapEnd = Math.min(sizeBytes, at + gapExtent);
    if (mode === 'zeros') {
      for (; at < gapEnd; ) {
        const n = Math.min(piece, gapEnd - at);
        await handle.write(zero, 0, n, at);
        at += n;
      }
    }
    at = gapEnd;
  }
} finally {
  await handle.close();
}
process.stdout.write(`${JSON.stringify({ path, sizeBytes, dataBytes, zeroBytes: sizeBytes - dataBytes, mode })}\n`);
