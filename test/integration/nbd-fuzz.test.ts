/**
 * Fuzzing the NBD server with more than 10,000 malformed inputs: random and garbled bytes in
 * the handshake, and framed-but-invalid, truncated or garbage requests in transmission. The
 * server must answer each invalid request with an error (never touching the disk), close
 * connections that break the protocol, never crash, and keep serving a well-behaved client
 * on the side without a wrong byte.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FileDevice, Logger } from '../../src/core/index.js';
import { NbdServer } from '../../src/nbd/index.js';
import { CMD, NbdTestClient, encodeOption, encodeRequest } from '../support/nbd-client.js';
import { requireTool, run, sha256, sha256File } from '../support/nbd-tools.js';
import { createPrng as prng } from '../support/random-workload.js';

const MiB = 1024 * 1024;
const diskBytes = 4 * MiB;
const seed = Number(process.env.NBD_FUZZ_SEED ?? Date.now() % 2 ** 31);

let dir: string;
let server: NbdServer;
let fuzzDisk: FileDevice;
let goodDisk: FileDevice;
let socketPath: string;
let fuzzOriginal: Buffer;

beforeAll(async () => {
  await requireTool('qemu-img');
  dir = await mkdtemp(join(tmpdir(), 'ferry-nbd-fuzz-'));
  fuzzOriginal = randomBytes(diskBytes);
  await writeFile(join(dir, 'fuzz.img'), fuzzOriginal);
  await writeFile(join(dir, 'fuzz-copy.img'), fuzzOriginal);
  await writeFile(join(dir, 'good.img'), Buffer.alloc(diskBytes));
  fuzzDisk = await FileDevice.open(join(dir, 'fuzz.img'));
  goodDisk = await FileDevice.open(join(dir, 'good.img'));
  server = new NbdServer({
    exports: new Map([
      ['fuzz', fuzzDisk],
      ['good', goodDisk],
    ]),
    logger: Logger.silent(),
    maxConnections: 1024,
    closeTimeoutMs: 2000,
  });
  socketPath = join(dir, 'nbd.sock');
  await server.listen({ path: socketPath });
});

afterAll(async () => {
  await server?.close();
  await fuzzDisk?.close();
  await goodDisk?.close();
  await rm(dir, { recursive: true, force: true });
});

/** Sends bytes on a fresh connection, half-closes, and waits for the server to close it. */
async function sendAndExpectClose(data: Buffer): Promise<void> {
  const socket = await NbdTestClient.raw({ path: socketPath });
  socket.on('data', () => {});
  socket.on('error', () => {});
  const closed = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not close a fuzzed handshake (seed ${seed}, input ${data.toString('hex').slice(0, 80)})`)), 5000);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
  });
  socket.end(data);
  await closed;
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0, 0);
  return b;
}

function handshakeInput(rand: () => number): Buffer {
  const int = (n: number): number => Math.floor(rand() * n);
  const bytes = (n: number): Buffer => Buffer.from(Array.from({ length: n }, () => int(256)));
  const flags = u32(int(4));
  switch (int(9)) {
    case 0:
      return bytes(1 + int(300));
    case 1:
      return Buffer.concat([flags, bytes(int(200))]);
    case 2:
      return u32(4 + int(2 ** 31)); // unknown client flag bits
    case 3: // bad option magic
      return Buffer.concat([flags, encodeOption(7, bytes(int(20)), BigInt(int(2 ** 31)))]);
    case 4: {
      // Random option number with data that is shorter or longer than declared.
      const option = encodeOption(int(3) === 0 ? int(2 ** 32) : int(20), bytes(int(64)));
      option.writeUInt32BE(int(128), 12);
      return Buffer.concat([flags, option]);
    }
    case 5: {
      // NBD_OPT_GO / NBD_OPT_INFO with inconsistent inner lengths.
      const data = Buffer.concat([u32(int(3) === 0 ? 2 ** 32 - 1 - int(10) : int(12)), Buffer.from('fuzz'), bytes(int(8))]);
      return Buffer.concat([flags, encodeOption(6 + int(2), data), bytes(int(40))]);
    }
    case 6: // NBD_OPT_EXPORT_NAME for an export that does not exist: the server must hang up
      return Buffer.concat([flags, encodeOption(1, Buffer.from(`nope-${int(1000)}`))]);
    case 7: {
      // Declares far more option data than the server accepts.
      const option = encodeOption(int(12), Buffer.alloc(0));
      option.writeUInt32BE(65 * 1024 + int(2 ** 31), 12);
      return Buffer.concat([flags, option, bytes(int(100))]);
    }
    default: {
      // A few valid options (list, structured replies, info), then a truncated one.
      const valid = [encodeOption(3, Buffer.alloc(0)), encodeOption(8, Buffer.alloc(0)), encodeOption(6, Buffer.concat([u32(4), Buffer.from('good'), Buffer.from([0, 0])]))];
      const parts = [flags];
      for (let i = 0; i < 1 + int(4); i++) parts.push(valid[int(valid.length)]!);
      const last = encodeOption(int(20), bytes(int(30)));
      parts.push(last.subarray(0, int(last.length)));
      return Buffer.concat(parts);
    }
  }
}

/** A request that is well framed but must be refused; returns it with the payload it carries. */
function invalidRequest(rand: () => number, structured: boolean): { type: number; flags: number; offset: number; length: number; payload?: Buffer } {
  const int = (n: number): number => Math.floor(rand() * n);
  const commands = [CMD.READ, CMD.WRITE, CMD.TRIM, CMD.WRITE_ZEROES];
  const type = commands[int(commands.length)]!;
  const payloadFor = (length: number): Buffer | undefined => (type === CMD.WRITE ? randomBytes(length) : undefined);
  switch (int(6)) {
    case 0: {
      // Runs past the end of the export.
      const length = 1 + int(64 * 1024);
      const offset = int(3) === 0 ? 2 ** 40 + int(2 ** 20) : diskBytes - int(length);
      return { type, flags: 0, offset, length, payload: payloadFor(length) };
    }
    case 1: {
      // In range, but with a flag this command does not take.
      const allowed = type === CMD.READ ? (structured ? 0b101 : 0b001) : type === CMD.WRITE_ZEROES ? 0b011 : 0b001;
      let flags = 0;
      while ((flags & ~allowed) === 0) flags = int(0x10000);
      const length = 1 + int(8192);
      return { type, flags, offset: int(diskBytes - length), length, payload: payloadFor(length) };
    }
    case 2: {
      // Unknown command: no payload follows (only WRITE carries one), so framing holds.
      const unknown = [5, 7, 8, 9, 100, 0xffff, 2 + int(0xfffd)].filter((t) => t !== CMD.FLUSH && t !== CMD.DISC && t !== CMD.WRITE_ZEROES && t !== CMD.TRIM);
      return { type: unknown[int(unknown.length)]!, flags: int(0x10000), offset: int(2 ** 32), length: int(2 ** 32) };
    }
    case 3:
      return { type, flags: 0, offset: int(diskBytes), length: 0 };
    case 4:
      return { type: CMD.FLUSH, flags: 0, offset: 1 + int(1000), length: int(1000) };
    default:
      // Larger than the 32 MiB maximum: READ only (a WRITE would have to send it all).
      return { type: CMD.READ, flags: 0, offset: 0, length: 32 * MiB + 1 + int(2 ** 30) };
  }
}

/** A valid handshake, `count` invalid requests each answered with an error, then a bad ending. */
async function fuzzTransmission(rand: () => number, count: number): Promise<number> {
  const structured = rand() < 0.5;
  const client = await NbdTestClient.connect({ path: socketPath, exportName: 'fuzz', structured });
  const replies = [];
  for (let i = 0; i < count; i++) {
    const r = invalidRequest(rand, structured);
    replies.push(client.request(r.type, r.flags, r.offset, r.length, r.payload));
  }
  const answered = await Promise.all(replies);
  for (const reply of answered) {
    if (reply.error === 0) throw new Error(`an invalid request was accepted (seed ${seed})`);
  }
  const endings: Buffer[] = [
    encodeRequest(CMD.READ, 0, 1n, 0n, 512, 0xdeadbeef), // bad magic
    encodeRequest(CMD.WRITE, 0, 2n, 0n, 4096).subarray(0, 1 + Math.floor(rand() * 27)), // truncated header
    Buffer.concat([encodeRequest(CMD.WRITE, 0, 3n, 0n, 4096), randomBytes(Math.floor(rand() * 4096))]), // truncated payload
    Buffer.concat([Buffer.from([0x99]), randomBytes(Math.floor(rand() * 500))]), // garbage
    encodeRequest(CMD.DISC, 0, 4n, 0n, 0),
  ];
  client.socket.end(endings[Math.floor(rand() * endings.length)]!);
  await client.closed();
  return count + 1;
}

/** Meanwhile, a client that follows the rules writes and reads the other export. */
async function wellBehaved(stop: () => boolean, expected: Buffer): Promise<number> {
  const client = await NbdTestClient.connect({ path: socketPath, exportName: 'good' });
  const fuzzView = await NbdTestClient.connect({ path: socketPath, exportName: 'fuzz', structured: false });
  let ops = 0;
  const rand = prng(seed ^ 0x5eed);
  while (!stop()) {
    const length = 1 + Math.floor(rand() * 65536);
    const offset = Math.floor(rand() * (diskBytes - length));
    const data = randomBytes(length);
    expect((await client.write(offset, data)).error).toBe(0);
    data.copy(expected, offset);
    const back = await client.read(offset, length);
    expect(back.error).toBe(0);
    expect(back.data!.equals(data)).toBe(true);
    const original = await fuzzView.read(offset, length);
    expect(original.data!.equals(fuzzOriginal.subarray(offset, offset + length))).toBe(true);
    ops++;
  }
  await client.flush();
  await client.disconnect();
  await fuzzView.disconnect();
  return ops;
}

describe(`NBD server under fuzzing (seed ${seed})`, () => {
  it('survives more than 10,000 malformed inputs; the disk is untouched and other clients unaffected', async () => {
    const rand = prng(seed);
    const goodExpected = Buffer.alloc(diskBytes);
    let done = false;
    const good = wellBehaved(() => done, goodExpected);

    let inputs = 0;
    // Handshake phase: 3,000 connections, 32 at a time.
    const handshakeInputs = Array.from({ length: 3000 }, () => handshakeInput(rand));
    for (let i = 0; i < handshakeInputs.length; i += 32) {
      await Promise.all(handshakeInputs.slice(i, i + 32).map((input) => sendAndExpectClose(input)));
      inputs += Math.min(32, handshakeInputs.length - i);
    }
    // Transmission phase: 200 connections x 50 invalid requests + a bad ending, 8 at a time.
    for (let i = 0; i < 200; i += 8) {
      const counts = await Promise.all(Array.from({ length: 8 }, () => fuzzTransmission(prng(Math.floor(rand() * 2 ** 31)), 50)));
      inputs += counts.reduce((a, b) => a + b, 0);
    }
    done = true;
    const goodOps = await good;

    expect(inputs).toBeGreaterThan(10_000);
    expect(goodOps).toBeGreaterThan(10);
    const stats = server.stats();
    expect(stats.protocolViolations).toBeGreaterThan(1000);
    expect(stats.errors).toBeGreaterThanOrEqual(10_000);

    // Not one byte of the fuzzed disk changed; the good disk holds exactly what was written.
    expect(await sha256File(join(dir, 'fuzz.img'))).toBe(sha256(fuzzOriginal));
    expect(await sha256File(join(dir, 'good.img'))).toBe(sha256(goodExpected));
    // And the server still serves a real client.
    const compare = await run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', `nbd+unix:///fuzz?socket=${socketPath}`, join(dir, 'fuzz-copy.img')]);
    expect(compare.code).toBe(0);
  });
});
