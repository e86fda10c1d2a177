import { describe, expect, it } from 'vitest';
import { ReplySlabs } from '../../src/nbd/reply-slabs.js';

describe('ReplySlabs', () => {
  it('carves replies side by side, 8-byte aligned, and moves to another slab when one is full', () => {
    const slabs = new ReplySlabs(1024);
    const a = slabs.take(100);
    expect(a.start).toBe(0);
    const b = slabs.take(100);
    expect(b).toBe(a);
    expect(b.start).toBe(104);
    const c = slabs.take(900);
    expect(c).not.toBe(a);
    expect(c.start).toBe(0);
  });

  it('reuses a full slab only once every reply carved from it is released', () => {
    const slabs = new ReplySlabs(256);
    const first = slabs.take(200);
    const second = slabs.take(200); // first is full: a new slab
    expect(second.buf).not.toBe(first.buf);
    expect(slabs.take(200).buf).not.toBe(first.buf); // second full, first still outstanding: a third
    first.release();
    const next = slabs.take(200); // the third is full: the first one's buffer is free again
    expect(next.buf).toBe(first.buf);
    expect(next.start).toBe(0);
  });
});
