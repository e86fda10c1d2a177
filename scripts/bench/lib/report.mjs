#!/usr/bin/env node
// Benchmark helper for scripts/bench/copy: turns its results (TSV: target, tool, run,
// seconds) into a table of seconds and MB/s of disk size, and ferry/peer throughput ratios
// (> 1 means ferry is faster), comparing the best run of each tool.
//
//   node scripts/bench/lib/report.mjs RESULTS.tsv IMAGE_SIZE_BYTES
import { readFileSync } from 'node:fs';

const [file, sizeText] = process.argv.slice(2);
const sizeBytes = Number(sizeText);
const rows = readFileSync(file, 'utf8')
  .split('\n')
  .filter(Boolean)
  .map((line) => {
    const [target, tool, run, seconds] = line.split('\t');
    return { target, tool, run: Number(run), seconds: Number(seconds) };
  });
const mbps = (seconds) => sizeBytes / 1e6 / seconds;
const goals = { file: { peer: 'cp', min: 0.8 }, s3: { peer: 'rclone', min: 1.2 }, restore: { peer: 'rclone', min: 1.5 } };

// Best (shortest) and median run per target and tool.
const groups = new Map();
for (const r of rows) {
  const key = `${r.target}\t${r.tool}`;
  if (!groups.has(key)) groups.set(key, []);
  groups.get(key).push(r.seconds);
}
const lines = [];
lines.push(`disk size ${(sizeBytes / 2 ** 30).toFixed(2)} GiB (${(sizeBytes / 1e6).toFixed(0)} MB); MB/s = disk size / wall-clock seconds`);
lines.push('');
lines.push(`${'target'.padEnd(8)}${'tool'.padEnd(16)}${'runs (s)'.padEnd(24)}${'best s'.padStart(8)}${'best MB/s'.padStart(11)}${'median s'.padStart(10)}`);
const best = new Map();
for (const [key, list] of groups) {
  const [target, tool] = key.split('\t');
  const sorted = [...list].sort((a, b) => a - b);
  const median = sorted.length % 2 ? sorted[(sorted.length - 1) / 2] : (sorted[sorted.length / 2 - 1] + sorted[sorted.length / 2]) / 2;
  best.set(key, sorted[0]);
  lines.push(
    `${target.padEnd(8)}${tool.padEnd(16)}${list.map((s) => s.toFixed(2)).join(' ').padEnd(24)}` +
      `${sorted[0].toFixed(2).padStart(8)}${mbps(sorted[0]).toFixed(0).padStart(11)}${median.toFixed(2).padStart(10)}`,
  );
}
lines.push('');
for (const [target, goal] of Object.entries(goals)) {
  const ferry = best.get(`${target}\tferry`);
  if (ferry === undefined) continue;
  const peers = [...best].filter(([key]) => key.startsWith(`${target}\t`) && !key.endsWith('\tferry'));
  if (peers.length === 0) continue;
  for (const [key, seconds] of peers) {
    lines.push(`ratio ${target}: ferry / ${key.split('\t')[1]} = ${(seconds / ferry).toFixed(2)}x`);
  }
  const [bestPeerKey, bestPeer] = peers.sort((a, b) => a[1] - b[1])[0];
  const ratio = bestPeer / ferry;
  lines.push(
    `goal  ${target}: ferry / best ${goal.peer} (${bestPeerKey.split('\t')[1]}) = ${ratio.toFixed(2)}x, goal >= ${goal.min}x: ${ratio >= goal.min ? 'met' : 'MISSED'}`,
  );
}
process.stdout.write(`${lines.join('\n')}\n`);
