/**
 * forEachConcurrently (src/core/concurrency.ts): one task per item, in order, at most
 * `concurrency` at once; items taken from the source only as slots free up; the first
 * failure (or an abort) stops it: no further task starts, the tasks under way finish, the
 * error is thrown, and nothing is left running when it returns or throws.
 *
 * Tasks take a seeded number of event-loop turns, and every pull, start, end and failure is
 * logged, so the tests check orderings rather than timings.
 */
import { describe, expect, it } from 'vitest';
import { forEachConcurrently, isFerryError } from '../../src/core/index.js';
import { createPrng } from '../support/random-workload.js';

/** Lets pending callbacks and resolved promises run, `n` event-loop turns. */
async function turns(n: number): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

type Event = { type: 'pull' | 'start' | 'end' | 'fail' | 'abort'; item: number; running: number };

/** A log of what happened, with the number of tasks running at each step. */
class Tracker {
  running = 0;
  maxRunning = 0;
  readonly events: Event[] = [];

  log(type: Event['type'], item: number): void {
    this.events.push({ type, item, running: this.running });
  }

  items(type: Event['type']): number[] {
    return this.events.filter((e) => e.type === type).map((e) => e.item);
  }

  /** Index in the log of the first event of this type (-1 if none). */
  first(type: Event['type']): number {
    return this.events.findIndex((e) => e.type === type);
  }

  /** A task that logs its start and end, takes `turnsOf(item)` turns, then fails if `failure` gives an error. */
  task(turnsOf: (item: number) => number, failure?: (item: number) => unknown) {
    return async (item: number): Promise<void> => {
      this.running++;
      this.maxRunning = Math.max(this.maxRunning, this.running);
      this.log('start', item);
      try {
        await turns(turnsOf(item));
        const err = failure?.(item);
        if (err !== undefined) {
          this.log('fail', item);
          throw err;
        }
      } finally {
        this.running--;
        this.log('end', item);
      }
    };
  }
}

/** An async source of 0..count-1 (or without end) that logs each item it hands out. */
async function* source(tracker: Tracker, count = Infinity, onClose?: () => void): AsyncGenerator<number> {
  try {
    for (let item = 0; item < count; item++) {
      await turns(item % 3); // a source that sometimes takes a while
      tracker.log('pull', item);
      yield item;
    }
  } finally {
    onClose?.();
  }
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i);

describe('forEachConcurrently: bounded, in order, once each', () => {
  it.each([
    { seed: 1, concurrency: 1, count: 12 },
    { seed: 2, concurrency: 3, count: 25 },
    { seed: 3, concurrency: 5, count: 40 },
    { seed: 4, concurrency: 8, count: 5 }, // fewer items than slots
  ])('runs at most $concurrency tasks at once over an array of $count items (seed $seed)', async ({ seed, concurrency, count }) => {
    const random = createPrng(seed);
    const durations = range(count).map(() => 1 + Math.floor(random() * 6));
    const tracker = new Tracker();
    await forEachConcurrently(range(count), concurrency, tracker.task((item) => durations[item]!));
    expect(tracker.maxRunning).toBe(Math.min(concurrency, count)); // reached, never more
    expect(tracker.items('start')).toEqual(range(count)); // each once, started in order
    expect([...tracker.items('end')].sort((a, b) => a - b)).toEqual(range(count));
    expect(tracker.running).toBe(0);
  });

  it.each([
    { seed: 5, concurrency: 2, count: 20 },
    { seed: 6, concurrency: 4, count: 30 },
  ])('does the same over an async iterable (seed $seed, concurrency $concurrency)', async ({ seed, concurrency, count }) => {
    const random = createPrng(seed);
    const durations = range(count).map(() => Math.floor(random() * 8));
    const tracker = new Tracker();
    let closed = false;
    await forEachConcurrently(source(tracker, count, () => (closed = true)), concurrency, tracker.task((item) => durations[item]!));
    expect(tracker.maxRunning).toBe(concurrency);
    expect(tracker.items('pull')).toEqual(range(count));
    expect(tracker.items('start')).toEqual(range(count));
    expect(tracker.running).toBe(0);
    expect(closed).toBe(true);
  });

  it('does nothing over no items', async () => {
    const tracker = new Tracker();
    await forEachConcurrently([], 3, tracker.task(() => 0));
    await forEachConcurrently(source(tracker, 0), 3, tracker.task(() => 0));
    expect(tracker.events).toEqual([]);
  });

  it('takes items lazily: never more than one item beyond the tasks started (seed 7)', async () => {
    const random = createPrng(7);
    const tracker = new Tracker();
    const concurrency = 3;
    let closed = false;
    const err = new Error('enough');
    // An endless source: only the failure at item 30 ends it.
    const promise = forEachConcurrently(
      source(tracker, Infinity, () => (closed = true)),
      concurrency,
      tracker.task(
        () => Math.floor(random() * 6),
        (item) => (item === 30 ? err : undefined),
      ),
    );
    await expect(promise).rejects.toBe(err);
    let pulls = 0;
    let starts = 0;
    for (const e of tracker.events) {
      if (e.type === 'pull') pulls++;
      if (e.type === 'start') starts++;
      expect(pulls - starts).toBeLessThanOrEqual(1);
    }
    expect(closed).toBe(true); // the source was closed (its finally ran)
  });

  // Items are taken only as slots free up: an item taken early would hold its memory (with
  // readChunks upstream, a chunk buffer) before it can start.
  it('pulls an item from the source only when a slot is free (seed 8)', async () => {
    const random = createPrng(8);
    const tracker = new Tracker();
    const concurrency = 2;
    await forEachConcurrently(source(tracker, 12), concurrency, tracker.task(() => 1 + Math.floor(random() * 5)));
    const pulls = tracker.events.filter((e) => e.type === 'pull');
    expect(pulls).toHaveLength(12);
    expect(Math.max(...pulls.map((p) => p.running))).toBeLessThan(concurrency);
  });
});

describe('forEachConcurrently: failure', () => {
  it.each([
    { seed: 9, concurrency: 1 },
    { seed: 10, concurrency: 3 },
    { seed: 11, concurrency: 6 },
  ])('throws the first failure once the tasks under way finish (seed $seed, concurrency $concurrency)', async ({ seed, concurrency }) => {
    const random = createPrng(seed);
    const tracker = new Tracker();
    const first = new Error('first');
    const second = new Error('second');
    const count = 20;
    // Item 4 fails after 3 turns; item 5, if started, fails later: the first one is thrown.
    const task = tracker.task(
      (item) => (item === 4 ? 3 : item === 5 ? 12 : Math.floor(random() * 8)),
      (item) => (item === 4 ? first : item === 5 ? second : undefined),
    );
    const err = await forEachConcurrently(range(count), concurrency, task).then(
      () => undefined,
      (e: unknown) => e,
    );
    const atThrow = { running: tracker.running, events: tracker.events.length };
    expect(err).toBe(first);
    expect(atThrow.running).toBe(0); // every task under way has finished
    const started = tracker.items('start');
    expect([...tracker.items('end')].sort((a, b) => a - b)).toEqual(started);
    expect(started).toEqual(range(started.length)); // in order, no gaps
    expect(started.length).toBeLessThan(count); // and it stopped
    await turns(30);
    expect(tracker.events.length).toBe(atThrow.events); // nothing ran after it threw
  });

  // No task starts after the first failure, not even in the slot the failed task frees.
  it('starts no task after the first failure (seed 12)', async () => {
    const random = createPrng(12);
    const tracker = new Tracker();
    const err = new Error('boom');
    const task = tracker.task(
      (item) => (item === 0 ? 2 : Math.floor(random() * 6)),
      (item) => (item === 0 ? err : undefined),
    );
    await expect(forEachConcurrently(range(10), 1, task)).rejects.toBe(err);
    const failedAt = tracker.first('fail');
    expect(failedAt).toBeGreaterThanOrEqual(0);
    expect(tracker.events.slice(failedAt).filter((e) => e.type === 'start')).toEqual([]);
  });

  it('throws an error of the source once the tasks under way finish', async () => {
    const tracker = new Tracker();
    const err = new Error('source broke');
    async function* broken(): AsyncGenerator<number> {
      yield 0;
      yield 1;
      await turns(2);
      throw err;
    }
    await expect(forEachConcurrently(broken(), 4, tracker.task(() => 10))).rejects.toBe(err);
    expect(tracker.running).toBe(0);
    expect(tracker.items('start')).toEqual([0, 1]);
    expect([...tracker.items('end')].sort((a, b) => a - b)).toEqual([0, 1]);
  });

  it('leaves nothing running after it returns (seed 13)', async () => {
    const random = createPrng(13);
    const tracker = new Tracker();
    await forEachConcurrently(source(tracker, 15), 4, tracker.task(() => Math.floor(random() * 10)));
    const atReturn = tracker.events.length;
    expect(tracker.running).toBe(0);
    await turns(30);
    expect(tracker.events.length).toBe(atReturn);
  });
});

describe('forEachConcurrently: abort', () => {
  it('starts nothing and throws an aborted error when the signal has already fired', async () => {
    const tracker = new Tracker();
    const controller = new AbortController();
    controller.abort();
    const err = await forEachConcurrently(range(5), 2, tracker.task(() => 0), controller.signal).catch((e: unknown) => e);
    expect(isFerryError(err, 'aborted')).toBe(true);
    expect(tracker.items('start')).toEqual([]);
  });

  it.each([
    { seed: 14, concurrency: 1 },
    { seed: 15, concurrency: 3 },
  ])('stops with an aborted error when the signal fires, once the tasks under way finish (seed $seed, concurrency $concurrency)', async ({ seed, concurrency }) => {
    const random = createPrng(seed);
    const tracker = new Tracker();
    const controller = new AbortController();
    const count = 30;
    const task = tracker.task(
      () => 1 + Math.floor(random() * 5),
      (item) => {
        // Fired by item 5 at the end of its work, while others are under way.
        if (item === 5) {
          tracker.log('abort', item);
          controller.abort();
        }
        return undefined;
      },
    );
    const err = await forEachConcurrently(range(count), concurrency, task, controller.signal).catch((e: unknown) => e);
    expect(isFerryError(err, 'aborted')).toBe(true);
    expect(tracker.running).toBe(0);
    const started = tracker.items('start');
    expect([...tracker.items('end')].sort((a, b) => a - b)).toEqual(started);
    expect(started.length).toBeLessThan(count);
    const atThrow = tracker.events.length;
    await turns(30);
    expect(tracker.events.length).toBe(atThrow);
  });

  // No task starts after the signal fires, whether the loop waits for a slot or for the source.
  it('starts no task after the signal fires (seed 16)', async () => {
    const random = createPrng(16);
    const tracker = new Tracker();
    const controller = new AbortController();
    const task = tracker.task(
      () => 1 + Math.floor(random() * 5),
      (item) => {
        // Fired by item 3 at the end of its work, while the next items wait for a slot.
        if (item === 3) {
          tracker.log('abort', item);
          controller.abort();
        }
        return undefined;
      },
    );
    const err = await forEachConcurrently(range(20), 2, task, controller.signal).catch((e: unknown) => e);
    expect(isFerryError(err, 'aborted')).toBe(true);
    const abortedAt = tracker.first('abort');
    expect(tracker.events.slice(abortedAt).filter((e) => e.type === 'start')).toEqual([]);
  });
});
