/**
 * OverlapQueue (docs/DESIGN.md invariant 3): an IO that overlaps an earlier one still in
 * flight waits for it, so overlapping IOs reach the disk in arrival order; IOs that do not
 * overlap are never held back.
 */
import { describe, expect, it } from 'vitest';
import { OverlapQueue, type OverlapTicket } from '../../src/delta/overlap-queue.js';
import { createPrng } from '../support/random-workload.js';

/** Lets every resolved promise's callbacks run. */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Whether the ticket's IO may run now (its `ready` has resolved, or it had none). */
async function isReady(ticket: OverlapTicket): Promise<boolean> {
  if (ticket.ready === undefined) return true;
  let ready = false;
  void ticket.ready.then(() => (ready = true));
  await settle();
  return ready;
}

describe('OverlapQueue', () => {
  it('lets non-overlapping IOs start at once, touching ranges included', () => {
    const queue = new OverlapQueue();
    const a = queue.enqueue(0, 10);
    const b = queue.enqueue(10, 10); // [10, 20) touches [0, 10) but does not overlap it
    const c = queue.enqueue(100, 1);
    expect([a.ready, b.ready, c.ready]).toEqual([undefined, undefined, undefined]);
    expect(queue.size).toBe(3);
    b.release();
    expect(queue.size).toBe(2);
  });

  it('holds an overlapping IO until the earlier one is released', async () => {
    const queue = new OverlapQueue();
    const a = queue.enqueue(0, 10);
    const b = queue.enqueue(9, 2);
    expect(b.ready).toBeInstanceOf(Promise);
    expect(await isReady(b)).toBe(false);
    a.release();
    expect(await isReady(b)).toBe(true);
    b.release();
    expect(queue.size).toBe(0);
  });

  it('waits for every earlier overlapping IO, and only for those', async () => {
    const queue = new OverlapQueue();
    const a = queue.enqueue(0, 10);
    const b = queue.enqueue(20, 10);
    const c = queue.enqueue(5, 20); // overlaps a and b
    const d = queue.enqueue(22, 10); // overlaps b and c
    const e = queue.enqueue(40, 5); // overlaps nothing
    expect(e.ready).toBeUndefined();
    a.release();
    expect([await isReady(c), await isReady(d)]).toEqual([false, false]);
    b.release();
    expect([await isReady(c), await isReady(d)]).toEqual([true, false]);
    c.release();
    expect(await isReady(d)).toBe(true);
  });

  it('keeps overlapping IOs in arrival order even when a later one is released first', async () => {
    const queue = new OverlapQueue();
    const a = queue.enqueue(0, 8);
    const b = queue.enqueue(0, 8);
    const c = queue.enqueue(4, 8);
    // b gives up before it ran (the capture filter does this when admission fails): c still
    // waits for a, which it overlaps directly.
    b.release();
    expect(await isReady(c)).toBe(false);
    a.release();
    expect(await isReady(c)).toBe(true);
    expect(queue.size).toBe(1);
  });

  it('does not register zero-length IOs', () => {
    const queue = new OverlapQueue();
    queue.enqueue(0, 10);
    const empty = queue.enqueue(5, 0);
    expect(empty.ready).toBeUndefined();
    expect(queue.size).toBe(1);
    empty.release();
    expect(queue.size).toBe(1);
  });

  it('ignores a second release of the same ticket', async () => {
    const queue = new OverlapQueue();
    const a = queue.enqueue(0, 10);
    const b = queue.enqueue(50, 10);
    const c = queue.enqueue(50, 10);
    a.release();
    a.release(); // must not remove b (which took a's slot) nor wake c
    expect(queue.size).toBe(2);
    expect(await isReady(c)).toBe(false);
    b.release();
    expect(await isReady(c)).toBe(true);
  });

  // Random ranges over a small disk so that many overlap; releases in random order, and now
  // and then a waiting IO that gives up. After every step the queue must run exactly the IOs
  // whose earlier overlapping IOs are all released.
  it.each([1, 2, 3, 4, 5, 6])('matches a model of arrival order under random IO (seed %i)', async (seed) => {
    const random = createPrng(seed);
    const int = (n: number) => Math.floor(random() * n);
    const queue = new OverlapQueue();
    interface Io {
      offset: number;
      end: number;
      ticket: OverlapTicket;
      started?: number;
      released?: number;
    }
    const ios: Io[] = [];
    let clock = 0;
    const overlap = (a: Io, b: Io) => a.offset < b.end && b.offset < a.end;
    const running = () => ios.filter((io) => io.started !== undefined && io.released === undefined);
    const waiting = () => ios.filter((io) => io.started === undefined && io.released === undefined);
    const release = (io: Io) => {
      io.released = ++clock;
      io.ticket.release();
    };

    for (let step = 0; step < 400; step++) {
      const r = random();
      if (r < 0.5 || running().length === 0) {
        const offset = int(64);
        const io: Io = { offset, end: offset + 1 + int(12), ticket: undefined! };
        io.ticket = queue.enqueue(io.offset, io.end - io.offset);
        ios.push(io);
        if (io.ticket.ready === undefined) io.started = ++clock;
        else void io.ticket.ready.then(() => (io.started ??= ++clock));
      } else if (r < 0.95 || waiting().length === 0) {
        const candidates = running();
        release(candidates[int(candidates.length)]!);
      } else {
        const candidates = waiting();
        release(candidates[int(candidates.length)]!);
      }
      await settle();

      const live = ios.filter((io) => io.released === undefined);
      expect(queue.size).toBe(live.length);
      for (const io of live) {
        const i = ios.indexOf(io);
        const blocked = ios.slice(0, i).some((earlier) => earlier.released === undefined && overlap(earlier, io));
        expect(io.started !== undefined, `seed ${seed}, step ${step}, io #${i} [${io.offset}, ${io.end})`).toBe(!blocked);
      }
    }
    while (running().length > 0) {
      for (const io of running()) release(io);
      await settle();
    }
    expect(queue.size).toBe(0);

    // Overlapping IOs ran one after the other, in arrival order; an IO that gave up before it
    // started does not count.
    const ran = ios.filter((io) => io.started !== undefined && io.started < io.released!);
    expect(ran.length).toBeGreaterThan(100);
    for (let i = 0; i < ran.length; i++) {
      for (let j = i + 1; j < ran.length; j++) {
        if (overlap(ran[i]!, ran[j]!)) expect(ran[i]!.released!, `seed ${seed}: io ${i} and ${j}`).toBeLessThan(ran[j]!.started!);
      }
    }
  });
});
