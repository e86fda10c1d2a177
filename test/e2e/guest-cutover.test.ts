/**
 * ferry in a real VM's data path: a QEMU guest (TCG) boots with its disk served by ferry's
 * NBD server through the capture filter, and keeps rewriting a checkable pattern while the
 * disk is base-copied and its deltas streamed to a replica. Cutover pauses the VM over QMP
 * (`stop` replies once in-flight IO is drained and flushed), drains the final delta and
 * verifies: the replica must equal the source byte for byte, and hold a complete, in-order
 * pattern whose generations match what the guest reported on its console.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Logger } from '../../src/core/index.js';
import { NbdServer } from '../../src/nbd/index.js';
import { FileStore, Repository } from '../../src/store/index.js';
import { DiskReplication } from '../../src/migrate/index.js';
import { QemuVm } from '../../src/cutover/index.js';
import { sha256File } from '../support/images.js';
import { tempDir } from '../support/temp.js';
import { checkGuestPattern, checkGuestRegion, guestAppend, guestBlock, guestBlockBytes, reportedGenerations, testGuest } from '../support/test-guest.js';

const MiB = 1024 * 1024;
const blocks = 256; // 1 MiB of pattern at the start of a 16 MiB disk
const bootTimeoutMs = 60_000; // TCG on a loaded 2-core machine

let dir: { path: string; cleanup: () => Promise<void> };
beforeAll(async () => (dir = await tempDir('ferry-guest-')));
afterAll(async () => dir?.cleanup());

describe('a live QEMU guest behind the capture filter', () => {
  it('cuts over to a replica that holds exactly what the guest wrote', async () => {
    // Fails (never skips) naming the missing tool or package.
    const guest = await testGuest();
    const sourcePath = join(dir.path, 'source.img');
    const replicaPath = join(dir.path, 'replica.img');
    const socketPath = join(dir.path, 'nbd.sock');
    const image = await open(sourcePath, 'w');
    await image.truncate(16 * MiB);
    await image.close();

    const repo = await Repository.openOrInit(new FileStore(join(dir.path, 'store')), MiB);
    const rep = await DiskReplication.start({
      diskId: 'disk0',
      sourcePath,
      trackerDir: join(dir.path, 'tracker'),
      repo,
      replicaPath,
      journal: { segmentMaxAgeMs: 50 },
      applyPollMs: 20,
    });
    const server = new NbdServer({ exports: new Map([['disk0', rep.filter]]), logger: Logger.silent() });
    await server.listen({ path: socketPath });
    const vm = new QemuVm({
      binary: guest.qemuBinary,
      runDir: dir.path,
      kernelPath: guest.kernelPath,
      initrdPath: guest.initrdPath,
      append: guestAppend({ blocks, sleepSeconds: 0 }), // a writer that never rests
      disk: { socketPath, exportName: 'disk0' },
      consoleLogPath: join(dir.path, 'console.log'),
    });

    try {
      await vm.start();
      expect(vm.qmp.greeting.version.qemu.major).toBeGreaterThanOrEqual(7);
      await expect(vm.qmp.execute('no-such-command')).rejects.toMatchObject({ code: 'bad-input', qmpClass: 'CommandNotFound' });
      await vm.waitForConsole(/FERRY-GUEST: wrote gen 1\b/, bootTimeoutMs);

      // The base copy runs while the guest writes; then deltas stream while it goes on.
      const copy = await rep.baseCopy();
      await rep.startReplica(copy.manifestId);
      const atCopy = Math.max(...reportedGenerations(vm.console));
      await vm.waitForConsole(new RegExp(`FERRY-GUEST: wrote gen ${atCopy + 3}\\b`), 30_000);
      expect(rep.figures().sourceSeq).toBeGreaterThan(copy.manifest.epoch);

      // Cutover: pause the VM (its reply: IO drained and flushed), then the disk cutover.
      // The pause lands while the guest is part-way through its next generation.
      await sleep(100);
      const stopEvent = vm.qmp.waitForEvent('STOP', 60_000);
      await vm.pause();
      await stopEvent;
      expect(await vm.status()).toMatchObject({ running: false, status: 'paused' });
      const cutover = await rep.cutover({ verify: 'full' });
      expect(cutover.verified).toBe('full');
      expect(cutover.finalSeq).toBeGreaterThan(copy.manifest.epoch);

      const replicaHash = await sha256File(replicaPath);
      expect(await sha256File(sourcePath)).toBe(replicaHash);

      // The source VM is done. It quits while the filter fences the disk (its last flush
      // passes), and it wrote nothing more.
      expect(rep.fence).toMatchObject({ finalSeq: cutover.finalSeq, replication: rep.tracker.replication });
      expect(rep.filter.fenced).toBe(true);
      expect(await vm.quit({ timeoutMs: 15_000 })).toEqual({ code: 0, signal: null });
      expect(await sha256File(sourcePath)).toBe(replicaHash);

      // Exactly what the guest wrote: every block a complete record, in write order, and
      // the generations the ones it had reported (the last one it reported as flushed is
      // on disk everywhere; the next may have been under way).
      const check = await checkGuestPattern(replicaPath, { blocks });
      const reported = reportedGenerations(vm.console);
      const last = Math.max(...reported);
      expect(check.errors).toEqual([]);
      expect(check.ordered).toBe(true);
      expect(check.unwritten).toBe(0);
      expect(last).toBeGreaterThanOrEqual(atCopy + 3);
      expect(check.minGen).toBeGreaterThanOrEqual(last);
      expect(check.maxGen).toBeLessThanOrEqual(last + 1);
    } catch (err) {
      const message = (err as Error).message;
      throw new Error(message.includes('--- console') ? message : `${message}${vm.diagnostics()}`, { cause: err });
    } finally {
      if (vm.exited === undefined) await vm.kill().catch(() => undefined);
      // Requests QEMU left held in a quiesced filter must finish before the server closes.
      rep.filter.resume();
      await server.close();
      await rep.close();
    }
  }, 120_000);
});

// The checker must catch what it claims to: it is what makes the test above mean something.
describe('the guest pattern checker', () => {
  const region = (gens: number[]) => Buffer.concat(gens.map((gen, block) => (gen === 0 ? Buffer.alloc(guestBlockBytes) : guestBlock(block, gen))));

  it('accepts a generation part-way over the previous one', () => {
    const check = checkGuestRegion(region([3, 3, 3, 2, 2]));
    expect(check).toMatchObject({ errors: [], ordered: true, minGen: 2, maxGen: 3, unwritten: 0 });
    expect(check.generations).toEqual([3, 3, 3, 2, 2]);
    expect(checkGuestRegion(region([1, 1, 0, 0])).ordered).toBe(true);
  });

  it('rejects torn, misplaced and out-of-order blocks', () => {
    const torn = region([2, 2, 2]);
    guestBlock(1, 3).copy(torn, guestBlockBytes, 0, 512); // one sector of a newer write
    expect(checkGuestRegion(torn).errors).toEqual(['block 1: a torn or damaged record of gen 3']);
    const tornLate = region([2, 2, 2]);
    guestBlock(1, 3).copy(tornLate, guestBlockBytes + 3584, 3584); // the last sector only
    expect(checkGuestRegion(tornLate).errors).toEqual(['block 1: a torn or damaged record of gen 2']);

    const misplaced = Buffer.concat([guestBlock(0, 2), guestBlock(0, 2)]);
    expect(checkGuestRegion(misplaced).errors).toEqual(['block 1: holds the record of block 0 (gen 2)']);

    const backwards = checkGuestRegion(region([2, 2, 3, 3]));
    expect(backwards.ordered).toBe(false);
    expect(checkGuestRegion(region([5, 5, 3, 4])).ordered).toBe(false);
    expect(checkGuestRegion(region([2, 0, 2])).ordered).toBe(false);

    const garbage = region([1, 1]);
    garbage.fill(0x41, guestBlockBytes, guestBlockBytes + 100);
    expect(checkGuestRegion(garbage).errors[0]).toMatch(/^block 1: not a record/);
  });
});
