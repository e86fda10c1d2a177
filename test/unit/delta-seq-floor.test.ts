import { afterEach, beforeEach, expect, it } from 'vitest';
import { mkdtemp, open, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SeqFloor, seqFloorFileName } from '../../src/delta/seq-floor.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ferry-seq-floor-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function floorAfterReopen(): Promise<number> {
  const floor = await SeqFloor.open(dir);
  await floor.close();
  return floor.floor;
}

/** Flips one byte of the file at `position`, as a torn or damaged write would leave it. */
async function flipByte(position: number): Promise<void> {
  const h = await open(join(dir, seqFloorFileName), 'r+');
  const byte = Buffer.alloc(1);
  await h.read(byte, 0, 1, position);
  byte[0]! ^= 0xff;
  await h.write(byte, 0, 1, position);
  await h.close();
}

it('starts at 1, keeps every raise across reopens', async () => {
  const floor = await SeqFloor.open(dir);
  expect(floor.floor).toBe(1);
  for (const next of [10, 20, 35]) await floor.write(next);
  await floor.close();
  expect(await floorAfterReopen()).toBe(35);
});

it('a damaged newest slot leaves the floor before it; both damaged is an error naming the file', async () => {
  const floor = await SeqFloor.open(dir); // generation 1, in the second slot
  await floor.write(5); // generation 2, first slot
  await floor.write(7); // generation 3, second slot
  await floor.close();
  await flipByte(512 + 20); // inside the second slot's nextSeq
  expect(await floorAfterReopen()).toBe(5);
  await flipByte(3); // the first slot's magic
  await expect(SeqFloor.open(dir)).rejects.toMatchObject({ code: 'checksum-mismatch', message: expect.stringContaining(seqFloorFileName) });
});

it("carries the floor of version 1's journal-state.json into its file, then deletes the old one", async () => {
  await writeFile(join(dir, 'journal-state.json'), '{"version":1,"nextSeq":42}\n');
  expect(await floorAfterReopen()).toBe(42);
  expect(await readdir(dir)).toEqual([seqFloorFileName]);
  expect(await floorAfterReopen()).toBe(42);
});

it('a file whose first write never finished (a crash while it was made) starts again from the old floor', async () => {
  await writeFile(join(dir, 'journal-state.json'), '{"version":1,"nextSeq":42}\n');
  for (const left of [Buffer.alloc(0), Buffer.alloc(1024), Buffer.concat([Buffer.alloc(512), Buffer.alloc(512, 0x5a)])]) {
    await writeFile(join(dir, seqFloorFileName), left);
    await writeFile(join(dir, 'journal-state.json'), '{"version":1,"nextSeq":42}\n');
    expect(await floorAfterReopen()).toBe(42);
  }
});

it('refuses a damaged journal-state.json, naming it', async () => {
  await writeFile(join(dir, 'journal-state.json'), '{"version":1,');
  await expect(SeqFloor.open(dir)).rejects.toMatchObject({ code: 'checksum-mismatch', message: expect.stringContaining('journal-state.json') });
  expect(await readFile(join(dir, 'journal-state.json'), 'utf8')).toBe('{"version":1,');
});
