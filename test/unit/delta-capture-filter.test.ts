import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { FileDevice, type BlockDevice, type WriteData, type WriteOptions } from '../../src/core/index.js';
import { CaptureFilter } from '../../src/delta/capture-filter.js';
import { ChangeTracker, type ModeChange } from '../../src/delta/change-tracker.js';
import { readActivityLog } from '../../src/delta/activity-log.js';
import type { SealedSegment } from '../../src/delta/journal.js';
import { joined } from '../support/bytes.js';
import { RandomWorkload, createPrng, fillRandom } from '../support/random-workload.js';

const K = 1024;
const M = 1024 * K;
let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ferry-capture-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

function sha(buf: Uint8Array): string {
  return createHash('sha256').update(buf).digest('hex');
}

/**
 * A real decorator that delays every IO by a random 0-3 ms before passing it on, so that
 * IOs issued in one order complete in another (as a busy disk would). It changes no bytes.
 */
class JitterDevice implements BlockDevice {
  private readonly random: () => number;
  constructor(
    private readonly inner: BlockDevice,
    seed: number,
  ) {
    this.random = createPrng(seed);
  }
  get sizeBytes(): number {
    return this.inner.sizeBytes;
  }
  get readOnly(): boolean {
    return this.inner.readOnly;
  }
  private jitter(): Promise<void> {
    return new Promise((resolve) => setTimeout(resolve, Math.floor(this.random() * 4)));
  }
  async read(buf: Uint8Array, offset: number): Promise<void> {
    await this.jitter();
    await this.inner.read(buf, offset);
  }
  async write(data: WriteData, offset: number, options?: WriteOptions): Promise<void> {
    await this.jitter();
    await this.inner.write(data, offset, options);
  }
  async writeZeroes(offset: number, length: number, options?: WriteOptions): Promise<void> {
    await this.jitter();
    await this.inner.writeZeroes(offset, length, options);
  }
  async trim(offset: number, length: number, options?: WriteOptions): Promise<void> {
    await this.jitter();
    await this.inner.trim(offset, length, options);
  }
  flush(): Promise<void> {
    return this.inner.flush();
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

/** Holds writes until `open()` is called; counts the writes that reached it. */
class GateDevice implements BlockDevice {
  arrived = 0;
  private opened = false;
  private waiters: (() => void)[] = [];
  constructor(private readonly inner: BlockDevice) {}
  get sizeBytes(): number {
    return this.inner.sizeBytes;
  }
  get readOnly(): boolean {
    return this.inner.readOnly;
  }
  open(): void {
    this.opened = true;
    for (const w of this.waiters.splice(0)) w();
  }
  private async gate(): Promise<void> {
    this.arrived++;
    if (!this.opened) await new Promise<void>((resolve) => this.waiters.push(resolve));
  }
  read(buf: Uint8Array, offset: number): Promise<void> {
    return this.inner.read(buf, offset);
  }
  async write(data: WriteData, offset: number, options?: WriteOptions): Promise<void> {
    await this.gate();
    await this.inner.write(data, offset, options);
  }
  async writeZeroes(offset: number, length: number, options?: WriteOptions): Promise<void> {
    await this.gate();
    await this.inner.writeZeroes(offset, length, options);
  }
  async trim(offset: number, length: number, options?: WriteOptions): Promise<void> {
    await this.gate();
    await this.inner.trim(offset, length, options);
  }
  flush(): Promise<void> {
    return this.inner.flush();
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

/** A disk image with random contents; returns the device and its initial bytes (the base). */
async function makeDisk(sizeBytes: number, seed: number): Promise<{ disk: FileDevice; base: Buffer; path: string }> {
  const base = Buffer.alloc(sizeBytes);
  fillRandom(base, createPrng(seed));
  const path = join(dir, `disk-${seed}.img`);
  await writeFile(path, base);
  return { disk: await FileDevice.open(path), base, path };
}

async function applySegments(replica: Buffer, segments: readonly SealedSegment[]): Promise<void> {
  for (const segment of segments) {
    for await (const extent of segment.readExtents()) {
      if (extent.kind === 'write') replica.set(joined(extent.data!), extent.offset);
      else replica.fill(0, extent.offset, extent.offset + extent.length);
    }
  }
}

describe('CaptureFilter over a FileDevice', () => {
  for (const seed of [101, 202, 303]) {
    it(`base + sealed extents up to each seal point S equals the disk as it stood at S (seed ${seed})`, async () => {
      const sizeBytes = 16 * M;
      const { disk, base, path } = await makeDisk(sizeBytes, seed);
      const tracker = await ChangeTracker.open({
        dir: join(dir, 'tracker'),
        sizeBytes,
        journal: { segmentMaxAgeMs: 15, segmentMaxBytes: 2 * M },
      });
      expect(tracker.currentSeq).toBe(1); // the epoch of a base taken before any write
      const filter = new CaptureFilter(new JitterDevice(disk, seed), tracker);
      const workload = new RandomWorkload({ seed, sizeBytes, writers: 6, opsPerWriter: 30, shadow: base, hotBytes: 2 * M });
      const snapshots: { seq: number; sha: string }[] = [];
      let stop = false;
      const sealer = (async () => {
        while (!stop) {
          await new Promise((resolve) => setTimeout(resolve, 25));
          await filter.quiesce();
          const sealed = await tracker.seal();
          const seq = tracker.currentSeq - 1;
          if (sealed) expect(sealed.lastSeq).toBe(seq);
          snapshots.push({ seq, sha: sha(await readFile(path)) });
          filter.resume();
        }
      })();
      const result = await workload.run(filter);
      stop = true;
      await sealer;
      await filter.quiesce();
      await tracker.seal();
      snapshots.push({ seq: tracker.currentSeq - 1, sha: sha(await readFile(path)) });
      filter.resume();

      expect(result.counts.write).toBeGreaterThan(80);
      expect(snapshots.length).toBeGreaterThan(2);
      const segments = tracker.sealedSegments();
      // Replay segment by segment; at every seal point the replica must equal that snapshot.
      const replica = Buffer.from(base);
      let checked = 0;
      for (const segment of segments) {
        await applySegments(replica, [segment]);
        for (const snap of snapshots.filter((s) => s.seq === segment.lastSeq)) {
          expect(sha(replica)).toBe(snap.sha);
          checked++;
        }
      }
      expect(checked).toBeGreaterThan(2);
      const final = await readFile(path);
      expect(sha(replica)).toBe(sha(final));
      expect(sha(final)).toBe(sha(workload.shadow!));
      await tracker.close();
      await filter.close();
    }, 60_000);
  }

  it('keeps overlapping concurrent writes in issue order: journal replay equals the final disk (several seeds)', async () => {
    for (const seed of [7, 8, 9, 10]) {
      const sizeBytes = 4 * M;
      const { disk, base, path } = await makeDisk(sizeBytes, seed);
      const tracker = await ChangeTracker.open({ dir: join(dir, `tracker-${seed}`), sizeBytes, journal: { segmentMaxAgeMs: 0 } });
      const filter = new CaptureFilter(new JitterDevice(disk, seed), tracker);
      // Eight writers hammering one 64 KiB region with IOs up to 32 KiB.
      const workload = new RandomWorkload({ seed, sizeBytes, writers: 8, opsPerWriter: 60, maxIoBytes: 32 * K, overlap: 0.9, hotBytes: 64 * K, shadow: base });
      await workload.run(filter);
      await tracker.seal();
      const replica = Buffer.from(base);
      await applySegments(replica, tracker.sealedSegments());
      const final = await readFile(path);
      expect(sha(final)).toBe(sha(workload.shadow!));
      expect(sha(replica)).toBe(sha(final));
      await tracker.close();
      await filter.close();
    }
  }, 60_000);

  it('quiesce() waits for in-flight IO and holds new writes until resume(); flushes pass', async () => {
    const { disk } = await makeDisk(1 * M, 1);
    const gate = new GateDevice(disk);
    const tracker = await ChangeTracker.open({ dir: join(dir, 'tracker'), sizeBytes: disk.sizeBytes, journal: { segmentMaxAgeMs: 0 } });
    const filter = new CaptureFilter(gate, tracker);
    const first = filter.write(new Uint8Array(4 * K).fill(1), 0);
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(gate.arrived).toBe(1);
    let quiesced = false;
    const quiescing = filter.quiesce().then(() => (quiesced = true));
    const held = filter.write(new Uint8Array(4 * K).fill(2), 64 * K);
    const flushWhileQuiescing = filter.flush();
    await new Promise((resolve) => setTimeout(resolve, 30));
    expect(quiesced).toBe(false);
    expect(filter.inFlight).toBe(1);
    gate.open();
    await quiescing;
    await first;
    // The first write is recorded before quiesce resolved; the held one has not reached the disk.
    expect(tracker.currentSeq).toBe(2);
    expect(gate.arrived).toBe(1);
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(gate.arrived).toBe(1);
    await flushWhileQuiescing; // a paused VM shutting down flushes, and must not hang
    filter.resume();
    await held;
    expect(gate.arrived).toBe(2);
    expect(tracker.currentSeq).toBe(3);
    await tracker.close();
    await filter.close();
  });

  it('a FUA write reaches the disk with FUA and a flush flushes it, each extent in the durable activity log before the disk sees the write', async () => {
    const { disk } = await makeDisk(1 * M, 2);
    const trackerDir = join(dir, 'tracker');
    const tracker = await ChangeTracker.open({ dir: trackerDir, sizeBytes: disk.sizeBytes, activityExtentBytes: 64 * K, journal: { segmentMaxAgeMs: 0 } });
    const seen: string[] = [];
    const logged = async () => (await readActivityLog(join(trackerDir, 'activity-log.bin'), disk.sizeBytes, 64 * K))!.extents;
    // What the disk is asked, and what the activity log on disk holds at that moment.
    const watched: BlockDevice = {
      sizeBytes: disk.sizeBytes,
      readOnly: false,
      read: (buf, offset) => disk.read(buf, offset),
      write: async (data, offset, options) => {
        seen.push(`write ${offset} fua=${options?.fua === true} log=${(await logged()).join(',')}`);
        return disk.write(data, offset, options);
      },
      writeZeroes: async (offset, length, options) => {
        seen.push(`zero ${offset} fua=${options?.fua === true} log=${(await logged()).join(',')}`);
        return disk.writeZeroes(offset, length, options);
      },
      trim: (offset, length, options) => disk.trim(offset, length, options),
      flush: async () => {
        seen.push('flush');
        return disk.flush();
      },
      close: () => disk.close(),
    };
    const filter = new CaptureFilter(watched, tracker);
    await filter.write(new Uint8Array(8 * K).fill(7), 16 * K, { fua: true });
    await filter.writeZeroes(200 * K, 4 * K);
    await filter.flush();
    expect(seen).toEqual(['write 16384 fua=true log=0', 'zero 204800 fua=false log=0,3', 'flush']);
    expect(tracker.currentSeq).toBe(3); // both recorded
    await tracker.close();
    await filter.close();
  });

  it('rejects IO outside the disk without recording anything', async () => {
    const { disk } = await makeDisk(1 * M, 4);
    const tracker = await ChangeTracker.open({ dir: join(dir, 'tracker'), sizeBytes: disk.sizeBytes, journal: { segmentMaxAgeMs: 0 } });
    const filter = new CaptureFilter(disk, tracker);
    await expect(filter.write(new Uint8Array(1024), 1 * M - 512)).rejects.toThrow(/outside the disk/);
    expect(tracker.currentSeq).toBe(1);
    expect(tracker.state().dirtyBlocks).toBe(0);
    await tracker.close();
    await filter.close();
  });
});

describe('CaptureFilter: journal overflow falls back to the bitmap', () => {
  for (const seed of [31, 32, 33]) {
    it(`no write fails, and base + shipped + resync + journal from S reproduces the disk (seed ${seed})`, async () => {
      const sizeBytes = 16 * M;
      const { disk, base, path } = await makeDisk(sizeBytes, seed);
      const tracker = await ChangeTracker.open({
        dir: join(dir, 'tracker'),
        sizeBytes,
        journal: { segmentMaxAgeMs: 10, segmentMaxBytes: 256 * K, hardLimitBytes: 2 * M },
      });
      const modes: ModeChange[] = [];
      tracker.on('mode', (m) => modes.push(m));
      const filter = new CaptureFilter(new JitterDevice(disk, seed), tracker);
      const replica = Buffer.from(base); // the destination, kept warm
      const shadow = Buffer.from(base);
      const run = async (phase: number, ops: number): Promise<void> => {
        const w = new RandomWorkload({ seed: seed * 10 + phase, sizeBytes, writers: 4, opsPerWriter: ops, maxIoBytes: 256 * K, shadow });
        await w.run(filter);
        shadow.set(w.shadow!);
      };

      // Phase 1: streaming, and a shipper keeps up (applies and releases sealed segments).
      let shipping = true;
      const shipper = (async () => {
        while (shipping) {
          for (const segment of tracker.sealedSegments()) {
            await applySegments(replica, [segment]);
            await tracker.release(segment);
          }
          await new Promise((resolve) => setTimeout(resolve, 5));
        }
      })();
      await run(1, 20);
      shipping = false;
      await shipper;
      expect(tracker.mode).toBe('streaming');
      expect(tracker.consistent).toBe(true);

      // Phase 2: the link is down; the journal overflows. Every write still succeeds.
      await run(2, 40);
      expect(tracker.mode).toBe('bitmap');
      expect(tracker.consistent).toBe(false);
      expect(modes[0]).toMatchObject({ mode: 'bitmap' });
      expect(modes[0]!.reason).toMatch(/hard limit/);
      expect(tracker.state().dirtyBlocks).toBeGreaterThan(0);

      // Phase 3: back to streaming at S; resync dirty blocks while the VM keeps writing.
      const S = await tracker.startStreaming();
      expect(tracker.sealedSegments().length).toBe(0);
      let resyncing = true;
      const resync = (async () => {
        for (;;) {
          const runs = tracker.takeDirtyRuns(512 * K);
          if (runs.length === 0) {
            if (!resyncing) return;
            await new Promise((resolve) => setTimeout(resolve, 2));
            continue;
          }
          for (const r of runs) {
            const buf = Buffer.alloc(r.length);
            await filter.read(buf, r.offset);
            replica.set(buf, r.offset);
          }
        }
      })();
      // Keep the journal from overflowing again: a larger limit for this phase.
      tracker.hardLimitBytes = 512 * M;
      await run(3, 20);
      resyncing = false;
      await resync;
      expect(tracker.resyncComplete()).toBe(true);
      expect(tracker.consistent).toBe(true);
      await filter.quiesce();
      await tracker.seal();
      const segments = tracker.sealedSegments();
      expect(segments[0]!.firstSeq).toBe(S);
      await applySegments(replica, segments);
      const final = await readFile(path);
      expect(sha(final)).toBe(sha(shadow));
      expect(sha(replica)).toBe(sha(final));
      filter.resume();
      await tracker.close();
      await filter.close();
    }, 60_000);
  }
});
