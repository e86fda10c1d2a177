import { describe, expect, it } from 'vitest';
import { InlineIo } from '../../src/core/index.js';

function busy(ms: number): number {
  const until = performance.now() + ms;
  let spins = 0;
  while (performance.now() < until) spins++;
  return spins;
}

describe('InlineIo', () => {
  it('runs small calls inline and returns their result; larger ones are left to the threadpool', () => {
    const io = new InlineIo({ maxInlineBytes: 4096 });
    expect(io.tryInline(4096, () => 'ran')).toBe('ran');
    let called = false;
    expect(io.tryInline(4097, () => (called = true))).toBeUndefined();
    expect(called).toBe(false);
  });

  it('after slow inline calls in a row, sends IO to the threadpool for threadpoolMs, then tries inline again', async () => {
    const io = new InlineIo({ slowCallMs: 1, slowCallsToSwitch: 3, slowShareToSwitch: 0, threadpoolMs: 50 });
    io.tryInline(512, () => busy(3));
    io.tryInline(512, () => busy(3));
    expect(io.tryInline(512, () => 'inline')).toBe('inline'); // two slow calls may be the scheduler's doing
    io.tryInline(512, () => busy(3));
    expect(io.slowInlineCalls).toBe(3);
    expect(io.tryInline(512, () => 'inline')).toBeUndefined();
    await new Promise((resolve) => setTimeout(resolve, 60));
    expect(io.tryInline(512, () => 'inline')).toBe('inline');
  });

  it('with threadpoolMs 0, stays inline however many calls are slow', () => {
    const io = new InlineIo({ slowCallMs: 1, slowCallsToSwitch: 2, threadpoolMs: 0 });
    for (let i = 0; i < 4; i++) io.tryInline(512, () => busy(3));
    expect(io.slowInlineCalls).toBe(4);
    expect(io.tryInline(512, () => 'inline')).toBe('inline');
  });

  it('slow calls that held the loop for less than slowShareToSwitch of the window do not switch', () => {
    // A fast disk's rare slow sync: many calls over slowCallMs, but little of the loop's time.
    const io = new InlineIo({ slowCallMs: 1, slowCallsToSwitch: 3, slowWindowMs: 10_000, slowShareToSwitch: 0.02 });
    for (let i = 0; i < 6; i++) io.tryInline(512, () => busy(3));
    expect(io.slowInlineCalls).toBe(6);
    expect(io.tryInline(512, () => 'inline')).toBe('inline');
    io.tryInline(512, () => busy(200)); // the loop now held for over 200 ms of the 10 s window
    expect(io.tryInline(512, () => 'inline')).toBeUndefined();
  });

  it('slow calls spread wider than slowWindowMs do not switch', async () => {
    const io = new InlineIo({ slowCallMs: 1, slowCallsToSwitch: 2, slowShareToSwitch: 0, slowWindowMs: 20 });
    io.tryInline(512, () => busy(3));
    await new Promise((resolve) => setTimeout(resolve, 30));
    io.tryInline(512, () => busy(3));
    expect(io.tryInline(512, () => 'inline')).toBe('inline');
  });

  it('lets errors of the call through', () => {
    const io = new InlineIo();
    expect(() =>
      io.tryInline(1, () => {
        throw new Error('EIO');
      }),
    ).toThrow('EIO');
  });
});
