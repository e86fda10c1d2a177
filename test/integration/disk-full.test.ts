/**
 * A full file system under each part of the data path, with randomized concurrent writers:
 * the journal's (the tracker falls back to its bitmap; the VM's writes never fail), the
 * replica's (the applier retries, saying the file system is full) and the store's (shipping
 * retries, the journal overflows into the bitmap, a base copy fails saying why). Once space
 * is back, everything catches up and the replica equals the source byte for byte.
 */
import { symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { Logger } from '../../src/core/index.js';
import type { ModeChange } from '../../src/delta/index.js';
import type { DiskReplication } from '../../src/migrate/index.js';
import { FileStore, Repository } from '../../src/store/index.js';
import { sha256File } from '../support/images.js';
import { RandomWorkload } from '../support/random-workload.js';
import { startTestReplication } from '../support/replication.js';
import { mountSmallFileSystem, type SmallFileSystem } from '../support/small-fs.js';
import { tempDir } from '../support/temp.js';

const MiB = 1024 * 1024;
const sizeBytes = 24 * MiB;
let dir: Awaited<ReturnType<typeof tempDir>>;
const mounts: SmallFileSystem[] = [];
beforeAll(async () => (dir = await tempDir('ferry-disk-full-')));
afterAll(async () => {
  for (const fs of mounts) await fs.unmount();
  await dir.cleanup();
});

async function smallFileSystem(name: string, bytes: number): Promise<SmallFileSystem | undefined> {
  const fs = await mountSmallFileSystem(join(dir.path, name), bytes);
  if (fs) mounts.push(fs);
  return fs;
}

/** Warnings and errors logged, one line each. */
function capturingLogger(): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  return { logger: new Logger((level, message, fields) => lines.push(`${level} ${message} ${JSON.stringify(fields)}`), 'warn'), lines };
}

const workload = (seed: number, n: number) => new RandomWorkload({ seed: seed * 100 + n, sizeBytes, writers: 4, opsPerWriter: 40, maxIoBytes: 2 * MiB });

async function waitUntil(what: string, done: () => boolean): Promise<void> {
  for (let i = 0; i < 1200 && !done(); i++) await new Promise((r) => setTimeout(r, 50));
  if (!done()) throw new Error(`timed out waiting for ${what}`);
}

/**
 * The scenario each case shares: a replica started from a base copy, then `fs` filled;
 * randomized writers; `whileFull` checks what happened; space back, more writers; a cutover
 * whose replica must equal the source.
 */
async function throughFullFileSystem(rep: DiskReplication, fs: SmallFileSystem, seed: number, replicaPath: string, whileFull: () => Promise<void>): Promise<void> {
  try {
    const copy = await rep.baseCopy();
    await rep.startReplica(copy.manifestId);
    await fs.fill();
    await workload(seed, 1).run(rep.filter); // rejects if a single write fails
    await whileFull();
    await fs.free();
    await workload(seed, 2).run(rep.filter);
    const cutover = await rep.cutover({ verify: 'full' });
    expect(cutover.finalSeq).toBeGreaterThan(0);
    expect(await sha256File(replicaPath)).toBe(await sha256File(rep.options.sourcePath));
  } finally {
    await rep.close();
  }
}

it('the journal\'s file system full: no write fails, the tracker falls back to its bitmap, then catches up exactly (seed 71)', async (ctx) => {
  const seed = 71;
  const fs = await smallFileSystem('journal-fs', 32 * MiB);
  if (!fs) return ctx.skip('mounting a tmpfs needs root');
  const base = join(dir.path, 'journal');
  await symlink(fs.path, `${base}-tracker`); // the tracker's directory is on the small file system
  const { logger, lines } = capturingLogger();
  // A journal that never holds more than the file system has once freed (a shipper slowed
  // by a busy machine must not fill it again).
  const journal = { segmentMaxAgeMs: 30, maxMemoryBytes: 256 * 1024, hardLimitBytes: 16 * MiB };
  const { rep, replicaPath } = await startTestReplication(base, { sizeBytes, seed, journal, logger });
  const modes: ModeChange[] = [];
  rep.tracker.on('mode', (change) => modes.push(change));
  await throughFullFileSystem(rep, fs, seed, replicaPath, async () => {
    expect(modes.some((m) => m.mode === 'bitmap' && /file system is full/.test(m.reason))).toBe(true);
    expect(lines.join('\n')).toMatch(/falling back to the dirty bitmap.*file system is full/);
  });
});

it('the replica\'s file system full: the applier retries, saying so, and applies everything once there is space (seed 72)', async (ctx) => {
  const seed = 72;
  const fs = await smallFileSystem('replica-fs', 20 * MiB);
  if (!fs) return ctx.skip('mounting a tmpfs needs root');
  const { logger, lines } = capturingLogger();
  const replicaPath = join(fs.path, 'replica.img');
  const { rep } = await startTestReplication(join(dir.path, 'replica'), { sizeBytes, seed, dataFraction: 0.3, replicaPath, journal: { segmentMaxAgeMs: 30 }, logger });
  await throughFullFileSystem(rep, fs, seed, replicaPath, () =>
    waitUntil('the applier to hit the full file system', () => lines.some((l) => /applying deltas failed, will retry.*file system is full/.test(l))),
  );
});

it('the store\'s file system full: shipping retries, the journal overflows into the bitmap, a base copy fails saying why; then all catches up (seed 73)', async (ctx) => {
  const seed = 73;
  const fs = await smallFileSystem('store-fs', 96 * MiB);
  if (!fs) return ctx.skip('mounting a tmpfs needs root');
  const repo = await Repository.openOrInit(new FileStore(join(fs.path, 'store')), MiB);
  const { logger, lines } = capturingLogger();
  const { rep, replicaPath } = await startTestReplication(join(dir.path, 'store'), {
    sizeBytes,
    seed,
    dataFraction: 0.3,
    repo,
    journal: { segmentMaxAgeMs: 30, hardLimitBytes: 2 * MiB },
    backpressure: { maxDelayMs: 0 },
    logger,
  });
  const modes: string[] = [];
  rep.tracker.on('mode', (change: ModeChange) => modes.push(change.mode));
  await throughFullFileSystem(rep, fs, seed, replicaPath, async () => {
    await waitUntil('shipping to fail', () => lines.some((l) => /shipping failed, will retry.*file system is full/.test(l)));
    expect(modes).toContain('bitmap');
    await expect(rep.baseCopy()).rejects.toThrow(/file system is full/);
  });
});
