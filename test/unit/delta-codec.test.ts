/**
 * The delta codec (docs/FORMAT.md, "Deltas (version 2)") and deltas in a store: what is
 * encoded decodes to the same delta, any damage is refused before a byte is used, keys
 * name and order deltas, and a delta is only ever read back under its own key.
 */
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newReplicationId, type WriteData } from '../../src/core/index.js';
import {
  decodeDelta,
  deleteDelta,
  deltaKey,
  deltaVersion,
  encodeDelta,
  getDelta,
  listDeltas,
  parseDeltaKey,
  putDelta,
  type Delta,
  type DeltaExtent,
} from '../../src/delta/index.js';
import { FileStore, Repository } from '../../src/store/index.js';
import { tempDir } from '../support/temp.js';

const replication = newReplicationId();
const other = newReplicationId();
const sizeBytes = 1 << 20;

function write(offset: number, length: number, fill: number): DeltaExtent {
  return { kind: 'write', offset, length, data: Buffer.alloc(length, fill) };
}

function journal(first: number, last: number, extents: DeltaExtent[] = [], of = replication): Delta {
  return { kind: 'journal', replication: of, seq: first, endSeq: last, part: 0, generation: 0, final: false, diskSizeBytes: sizeBytes, createdAtMs: 1_700_000_000_123, extents };
}

function resync(seq: number, generation: number, part: number, final: boolean, extents: DeltaExtent[] = []): Delta {
  return { kind: 'resync', replication, seq, endSeq: seq + 5, part, generation, final, diskSizeBytes: sizeBytes, createdAtMs: 42, extents };
}

/** Rewrites the SHA-256 trailer so that only the change made on purpose is wrong. */
function reseal(bytes: Buffer): Buffer {
  createHash('sha256').update(bytes.subarray(0, bytes.length - 32)).digest().copy(bytes, bytes.length - 32);
  return bytes;
}

describe('delta codec', () => {
  const sample = journal(7, 19, [write(0, 4096, 0xaa), { kind: 'zero', offset: 8192, length: 65536 }, write(sizeBytes - 3, 3, 0x5c)]);

  it('decodes a journal delta to what was encoded', () => {
    expect(decodeDelta(encodeDelta(sample), 'sample')).toEqual(sample);
  });

  it('encodes a write given in pieces (as the journal keeps received data) as the same bytes as given whole', () => {
    const data = Buffer.alloc(10_000);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7) % 251;
    const whole = journal(3, 4, [{ kind: 'write', offset: 512, length: data.length, data }]);
    const pieces = [data.subarray(0, 1), data.subarray(1, 6000), new Uint8Array(data.subarray(6000))];
    const pieced: Delta<WriteData> = { ...whole, extents: [{ kind: 'write', offset: 512, length: data.length, data: pieces }] };
    expect(encodeDelta(pieced).equals(encodeDelta(whole))).toBe(true);
    const short: Delta<WriteData> = { ...whole, extents: [{ kind: 'write', offset: 512, length: data.length, data: pieces.slice(1) }] };
    expect(() => encodeDelta(short)).toThrow(expect.objectContaining({ code: 'internal' }));
  });

  it('decodes a resync piece to what was encoded, final flag and generation included', () => {
    for (const final of [false, true]) {
      const delta = resync(1000, 3, 17, final, [{ kind: 'zero', offset: 0, length: 512 }, write(512, 100, 1)]);
      expect(decodeDelta(encodeDelta(delta), 'resync')).toEqual(delta);
    }
  });

  it('keeps 64-bit fields past 32 bits, and an empty extent list', () => {
    const big: Delta = { ...journal(2 ** 40 + 1, 2 ** 41, []), diskSizeBytes: 2 ** 44, createdAtMs: 2 ** 45 + 7 };
    big.extents = [{ kind: 'zero', offset: 2 ** 43, length: 2 ** 33 }];
    expect(decodeDelta(encodeDelta(big), 'big')).toEqual(big);
    expect(decodeDelta(encodeDelta(journal(1, 1)), 'empty').extents).toEqual([]);
  });

  it('lays out the header as docs/FORMAT.md describes', () => {
    const bytes = encodeDelta(resync(9, 4, 2, true, [write(16, 8, 0x33)]));
    expect(bytes.toString('latin1', 0, 8)).toBe('FERRYDLT');
    expect(bytes.readUInt16LE(8)).toBe(deltaVersion);
    expect([bytes[10], bytes[11], bytes.readUInt32LE(12)]).toEqual([2, 1, 1]); // resync, final, 1 extent
    expect([bytes.readBigUInt64LE(16), bytes.readBigUInt64LE(24), bytes.readBigUInt64LE(32)]).toEqual([BigInt(sizeBytes), 9n, 14n]);
    expect([bytes.readUInt32LE(40), bytes.readBigUInt64LE(48), bytes.readBigUInt64LE(56)]).toEqual([2, 42n, 4n]);
    expect(bytes.toString('hex', 64, 80)).toBe(replication);
    expect(bytes.readBigUInt64LE(80)).toBe(0n); // needsSeq
    expect([bytes[88], bytes.readBigUInt64LE(96), bytes.readBigUInt64LE(104)]).toEqual([1, 16n, 8n]);
    expect(bytes.length).toBe(88 + 24 + 8 + 32);
  });

  it('keeps a resync\'s needsSeq, and reads version 2 deltas (without it) still', () => {
    const piece = { ...resync(9, 4, 0, false, [write(16, 8, 0x33)]), needsSeq: 5 };
    const bytes = encodeDelta(piece);
    expect(decodeDelta(bytes, 'x')).toEqual(piece);
    // The same piece as version 2 wrote it: no needsSeq field, an 80-byte header.
    const body = Buffer.concat([bytes.subarray(0, 80), bytes.subarray(88, -32)]);
    body.writeUInt16LE(2, 8);
    const v2 = Buffer.concat([body, createHash('sha256').update(body).digest()]);
    const { needsSeq: _none, ...withoutIt } = piece;
    expect(decodeDelta(v2, 'x')).toEqual(withoutIt);
    expect(bytes.subarray(-32)).toEqual(createHash('sha256').update(bytes.subarray(0, -32)).digest());
  });

  it('refuses to encode a write whose data is not its length, or a bad replication id', () => {
    expect(() => encodeDelta(journal(1, 1, [{ kind: 'write', offset: 0, length: 10, data: Buffer.alloc(9) }]))).toThrow(
      expect.objectContaining({ code: 'internal' }),
    );
    expect(() => encodeDelta(journal(1, 1, [{ kind: 'write', offset: 0, length: 10 }]))).toThrow(expect.objectContaining({ code: 'internal' }));
    expect(() => encodeDelta(journal(1, 1, [], 'ABC'))).toThrow(expect.objectContaining({ code: 'bad-input' }));
  });

  it('refuses to encode an extent a reader would refuse: empty, or past the end of the disk', () => {
    for (const extent of [
      { kind: 'zero', offset: 0, length: 0 },
      { kind: 'zero', offset: sizeBytes - 512, length: 1024 },
      { kind: 'write', offset: sizeBytes, length: 1, data: Buffer.alloc(1) },
    ] satisfies DeltaExtent[]) {
      expect(() => encodeDelta(journal(1, 1, [extent])), JSON.stringify(extent.offset)).toThrow(expect.objectContaining({ code: 'internal' }));
    }
  });

  it('refuses a delta with any single byte flipped, naming it', () => {
    const bytes = encodeDelta(journal(7, 19, [write(0, 16, 0xaa), { kind: 'zero', offset: 64, length: 64 }]));
    for (let i = 0; i < bytes.length; i++) {
      const damaged = Buffer.from(bytes);
      damaged[i]! ^= 0x10;
      expect(() => decodeDelta(damaged, 'deltas/d/x'), `byte ${i}`).toThrow(expect.objectContaining({ code: 'checksum-mismatch', message: expect.stringContaining('deltas/d/x') }));
    }
  });

  it('refuses a truncated delta, down to nothing', () => {
    const bytes = encodeDelta(sample);
    for (const length of [0, 1, 47, 48, 80, 111, 112, 200, bytes.length - 33, bytes.length - 1]) {
      expect(() => decodeDelta(bytes.subarray(0, length), 'cut'), `${length} bytes`).toThrow(expect.objectContaining({ code: 'checksum-mismatch' }));
    }
  });

  it('refuses a wrong magic, and an unknown version as unsupported, even with a valid checksum', () => {
    const wrongMagic = Buffer.from(encodeDelta(sample));
    wrongMagic.write('FERRYSEG', 0, 'latin1');
    expect(() => decodeDelta(reseal(wrongMagic), 'm')).toThrow(expect.objectContaining({ code: 'checksum-mismatch', message: expect.stringMatching(/magic/) }));

    const future = Buffer.from(encodeDelta(sample));
    future.writeUInt16LE(deltaVersion + 1, 8);
    expect(() => decodeDelta(reseal(future), 'v')).toThrow(
      expect.objectContaining({ code: 'unsupported-version', message: expect.stringContaining(`version ${deltaVersion + 1}`) }),
    );
  });

  it('refuses well-checksummed deltas whose contents break the format', () => {
    const damage = (edit: (b: Buffer) => void) => {
      const b = Buffer.from(encodeDelta(journal(1, 2, [write(4096, 16, 7)])));
      edit(b);
      return () => decodeDelta(reseal(b), 'bad');
    };
    const corrupt = expect.objectContaining({ code: 'checksum-mismatch' });
    expect(damage((b) => (b[10] = 3))).toThrow(corrupt); // unknown kind
    expect(damage((b) => (b[88] = 9))).toThrow(corrupt); // unknown extent op
    expect(damage((b) => b.writeBigUInt64LE(0n, 104))).toThrow(corrupt); // zero-length extent
    expect(damage((b) => b.writeBigUInt64LE(BigInt(sizeBytes - 8), 96))).toThrow(corrupt); // runs past the disk's end
    expect(damage((b) => b.writeUInt32LE(2, 12))).toThrow(corrupt); // more extents than there are
    expect(damage((b) => b.writeUInt32LE(0, 12))).toThrow(corrupt); // bytes left after the last extent
  });

  it('names journal deltas and resync pieces with zero-padded keys that parse back', () => {
    const j = deltaKey('disk-1', journal(12, 345));
    expect(j).toBe(`deltas/disk-1/${replication}/${'12'.padStart(20, '0')}-${'345'.padStart(20, '0')}.journal`);
    expect(parseDeltaKey(j)).toEqual({ key: j, kind: 'journal', replication, seq: 12, generation: 0, second: 345 });

    const r = deltaKey('disk-1', resync(12, 3, 7, false));
    expect(r).toBe(`deltas/disk-1/${replication}/${'12'.padStart(20, '0')}-${'3'.padStart(20, '0')}-000007.resync`);
    expect(parseDeltaKey(r)).toEqual({ key: r, kind: 'resync', replication, seq: 12, generation: 3, second: 7 });
  });

  it('gives keys that sort like their numbers', () => {
    const journals = [[9, 9], [10, 99], [100, 100], [2 ** 40, 2 ** 40 + 5]].map(([a, b]) => deltaKey('d', journal(a!, b!)));
    expect([...journals].sort()).toEqual(journals);
    const pieces = [[9, 0, 0], [9, 0, 10], [9, 2, 0], [9, 10, 1], [10, 0, 0]].map(([s, g, p]) => deltaKey('d', resync(s!, g!, p!, false)));
    expect([...pieces].sort()).toEqual(pieces);
  });

  it('refuses to name a delta of a bad disk id or replication id', () => {
    expect(() => deltaKey('../x', journal(1, 1))).toThrow(expect.objectContaining({ code: 'bad-input' }));
    expect(() => deltaKey('d', journal(1, 1, [], 'not-a-replication'))).toThrow(expect.objectContaining({ code: 'bad-input' }));
  });

  it('does not take other objects for deltas', () => {
    const good = deltaKey('d', journal(1, 2));
    for (const key of [
      `deltas/d/${replication}/cutover.json`,
      'manifests/0123',
      'config',
      `${good}.tmp`,
      good.replace(replication, replication.toUpperCase()),
      good.replace(replication, replication.slice(1)),
      `deltas/d/${replication}/1-2.journal`, // not zero-padded
      `deltas/d/${replication}/${'1'.padStart(20, '0')}-${'2'.padStart(20, '0')}-7.resync`,
      `deltas/d/${'1'.padStart(20, '0')}-${'2'.padStart(20, '0')}.journal`, // version 1 layout: no replication
    ]) {
      expect(parseDeltaKey(key), key).toBeUndefined();
    }
  });
});

describe('deltas in a store', () => {
  let dir: { path: string; cleanup: () => Promise<void> };
  let cases = 0;
  beforeAll(async () => (dir = await tempDir()));
  afterAll(async () => dir.cleanup());
  const openRepo = async () => Repository.openOrInit(new FileStore(`${dir.path}/store-${++cases}`));

  it('puts a delta under its key and gets it back', async () => {
    const repo = await openRepo();
    const delta = journal(5, 8, [write(0, 1000, 9), { kind: 'zero', offset: 4096, length: 4096 }]);
    const { key, sizeBytes: stored } = await putDelta(repo, 'd', delta);
    expect(key).toBe(deltaKey('d', delta));
    expect(stored).toBe(encodeDelta(delta).length);
    expect(await getDelta(repo, parseDeltaKey(key)!)).toEqual(delta);
  });

  it('lists deltas in replay order: by seq, resyncs (by generation, then part) before the journal delta', async () => {
    const repo = await openRepo();
    const inOrder = [
      journal(1, 3),
      resync(4, 0, 0, true),
      resync(4, 12, 0, false),
      resync(4, 12, 1, false),
      resync(4, 12, 10, true),
      journal(4, 9),
      resync(10, 0, 0, true),
      journal(10, 10),
      journal(11, 20),
    ];
    // Put in an order unlike the replay order; key order differs from it too (the journal
    // delta 4-9 sorts before the resync pieces of generation 12 at 4).
    for (const i of [8, 5, 2, 0, 7, 4, 1, 6, 3]) await putDelta(repo, 'd', inOrder[i]!);
    const { deltas, cutOver } = await listDeltas(repo, 'd', replication);
    expect(deltas.map((n) => n.key)).toEqual(inOrder.map((d) => deltaKey('d', d)));
    expect(cutOver).toBe(false);
  });

  it('lists only its own replication and disk, leaves foreign objects alone, and sees the cutover mark', async () => {
    const repo = await openRepo();
    await putDelta(repo, 'd', journal(1, 2));
    await putDelta(repo, 'd', journal(1, 2, [], other));
    await putDelta(repo, 'e', journal(3, 4));
    await repo.store.put(`deltas/d/${replication}/notes.txt`, Buffer.from('not a delta'));
    expect((await listDeltas(repo, 'd', replication)).deltas.map((n) => n.key)).toEqual([deltaKey('d', journal(1, 2))]);

    await repo.putCutoverMark({ disk: 'd', replication, finalSeq: 3, at: new Date(0).toISOString(), verified: 'deltas' });
    const after = await listDeltas(repo, 'd', replication);
    expect(after.cutOver).toBe(true);
    expect(after.deltas).toHaveLength(1);
    expect((await listDeltas(repo, 'd', other)).cutOver).toBe(false);
  });

  it('refuses a delta whose header does not match its key', async () => {
    const repo = await openRepo();
    const mismatched = [
      [journal(4, 6), journal(1, 3)], // other seqs
      [journal(1, 4), journal(1, 3)], // other last seq
      [journal(1, 3, [], other), journal(1, 3)], // another replication's delta
      [resync(4, 0, 1, false), resync(4, 0, 0, false)], // other part
      [resync(4, 1, 0, false), resync(4, 0, 0, false)], // other generation
      [resync(4, 0, 0, false), { ...journal(4, 0), endSeq: 0 }], // a resync under a journal key
    ];
    for (const [content, name] of mismatched) {
      const key = deltaKey('d', name!);
      await repo.putDeltaObject(key, encodeDelta(content!));
      await expect(getDelta(repo, parseDeltaKey(key)!), key).rejects.toMatchObject({ code: 'checksum-mismatch', message: expect.stringContaining(key) });
    }
  });

  it('refuses a damaged delta object, and reports a missing one as not found', async () => {
    const repo = await openRepo();
    const { key } = await putDelta(repo, 'd', journal(1, 3, [write(0, 64, 1)]));
    const bytes = Buffer.from(await repo.getDeltaObject(key));
    bytes[90]! ^= 1;
    await repo.putDeltaObject(key, bytes);
    await expect(getDelta(repo, parseDeltaKey(key)!)).rejects.toMatchObject({ code: 'checksum-mismatch' });

    await deleteDelta(repo, parseDeltaKey(key)!);
    expect((await listDeltas(repo, 'd', replication)).deltas).toEqual([]);
    await expect(getDelta(repo, parseDeltaKey(key)!)).rejects.toMatchObject({ code: 'not-found' });
  });
});
