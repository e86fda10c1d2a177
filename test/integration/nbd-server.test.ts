/**
 * ferry's NBD server against real clients: qemu-io, qemu-img, nbdcopy, nbdsh (libnbd).
 * Every check ends in bytes: the image file's SHA-256 against a buffer we built ourselves.
 */
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { FileDevice, Logger } from '../../src/core/index.js';
import { NbdServer } from '../../src/nbd/index.js';
import { NbdTestClient } from '../support/nbd-client.js';
import { nbdsh, requireTool, run, serveImage, sha256, sha256File, type ServedImage } from '../support/nbd-tools.js';

const MiB = 1024 * 1024;
let served: ServedImage | undefined;

beforeAll(async () => {
  for (const tool of ['qemu-io', 'qemu-img', 'nbdcopy', 'nbdsh']) await requireTool(tool);
});

afterEach(async () => {
  await served?.stop();
  served = undefined;
});

describe('NBD server with qemu tools', () => {
  it('writes patterns with qemu-io and reads them back, byte for byte', async () => {
    served = await serveImage({ sizeBytes: 16 * MiB });
    const expected = await readFile(served.imagePath);
    const writes: Array<[number, number, number]> = [
      [0, 4096, 0xa5],
      [1 * MiB + 512, 64 * 1024, 0x11],
      [3 * MiB - 100, 300, 0x7e], // unaligned: min block size is 1
      [15 * MiB, MiB, 0xcd],
    ];
    const args = ['-f', 'raw', served.uri];
    for (const [offset, length, pattern] of writes) {
      args.push('-c', `write -P ${pattern} ${offset} ${length}`);
      expected.fill(pattern, offset, offset + length);
    }
    args.push('-c', 'write -z 8M 128k', '-c', 'write -f -P 0x33 9M 4k', '-c', 'discard 10M 64k', '-c', 'flush');
    expected.fill(0, 8 * MiB, 8 * MiB + 128 * 1024);
    expected.fill(0x33, 9 * MiB, 9 * MiB + 4096);
    expected.fill(0, 10 * MiB, 10 * MiB + 64 * 1024); // ferry's devices read trimmed ranges as zeros
    for (const [offset, length, pattern] of writes) args.push('-c', `read -P ${pattern} ${offset} ${length}`);
    args.push('-c', 'read -P 0 8M 128k', '-c', 'read -P 0x33 9M 4k');
    const { stdout } = await run('qemu-io', args);
    expect(stdout).not.toMatch(/Pattern verification failed|error|failed/i);
    expect(await sha256File(served.imagePath)).toBe(sha256(expected));
    expect(served.server.stats().writes).toBeGreaterThanOrEqual(writes.length + 1);
  });

  it('qemu-img convert copies into and out of the export; qemu-img compare agrees', async () => {
    served = await serveImage({ sizeBytes: 32 * MiB, zero: true });
    const source = join(served.dir, 'source.img');
    const sourceBytes = randomBytes(32 * MiB);
    await writeFile(source, sourceBytes);
    await run('qemu-img', ['convert', '-n', '-f', 'raw', '-O', 'raw', source, served.uri]);
    expect(await sha256File(served.imagePath)).toBe(sha256(sourceBytes));

    const copy = join(served.dir, 'copy.img');
    await run('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', served.uri, copy]);
    expect(await sha256File(copy)).toBe(sha256(sourceBytes));

    expect((await run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', served.uri, source])).code).toBe(0);
    // And compare must notice a one-byte difference through the server.
    // The pattern must differ from the source's byte there (random data holds 0x5a one time in 256).
    const flipAt = 20 * MiB + 7;
    const flipped = sourceBytes[flipAt]! ^ 0xff;
    await run('qemu-io', ['-f', 'raw', served.uri, '-c', `write -P ${flipped} ${flipAt} 1`]);
    const result = await run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', served.uri, source], { allowFailure: true });
    expect(result.code).toBe(1);
  });

  it('nbdcopy copies to and from the export with several connections', async () => {
    served = await serveImage({ sizeBytes: 48 * MiB, zero: true });
    const source = join(served.dir, 'source.img');
    const sourceBytes = randomBytes(48 * MiB);
    await writeFile(source, sourceBytes);
    await run('nbdcopy', ['--connections=4', '--requests=16', source, served.uri]);
    expect(await sha256File(served.imagePath)).toBe(sha256(sourceBytes));
    const back = join(served.dir, 'back.img');
    await writeFile(back, Buffer.alloc(0));
    await run('nbdcopy', ['--connections=2', served.uri, back]);
    expect(await sha256File(back)).toBe(sha256(sourceBytes));
    expect(served.server.stats().connectionsTotal).toBeGreaterThanOrEqual(3);
  });

  it('serves over TCP too', async () => {
    const dir = await serveImage({ sizeBytes: 4 * MiB });
    served = dir;
    const server = new NbdServer({ exports: new Map([['disk0', served.device]]), logger: Logger.silent() });
    const address = await server.listen({ host: '127.0.0.1', port: 0 });
    try {
      if (!('port' in address)) throw new Error('expected a TCP address');
      const uri = `nbd://127.0.0.1:${address.port}/disk0`;
      await run('qemu-io', ['-f', 'raw', uri, '-c', 'write -P 0x42 1M 64k', '-c', 'read -P 0x42 1M 64k']);
      const expected = await readFile(served.imagePath);
      expected.fill(0x42, MiB, MiB + 64 * 1024);
      expect(await sha256File(served.imagePath)).toBe(sha256(expected));
    } finally {
      await server.close();
    }
  });
});

describe('NBD server seen through libnbd (nbdsh)', () => {
  it('negotiates what it advertises: list, block sizes, flags, structured replies, description', async () => {
    const dir = await serveImage({ sizeBytes: 8 * MiB });
    served = dir;
    // A second export, read-only, on the same server to list.
    const second = await FileDevice.open(served.imagePath, { readOnly: true });
    const socket = join(served.dir, 'multi.sock');
    const server = new NbdServer({
      exports: new Map<string, FileDevice | { device: FileDevice; description: string }>([
        ['disk0', { device: served.device, description: 'the first disk' }],
        ['ro', second],
      ]),
      defaultExport: 'disk0',
    });
    await server.listen({ path: socket });
    try {
      const out = await nbdsh(`
import json
h.set_opt_mode(True)
h.connect_unix(${JSON.stringify(socket)})
names = []
h.opt_list(lambda name, desc: names.append([name, desc]))
h.set_export_name("disk0")
h.set_full_info(True)
h.opt_go()
r = dict(names=sorted(names), size=h.get_size(), min=h.get_block_size(nbd.SIZE_MINIMUM),
  pref=h.get_block_size(nbd.SIZE_PREFERRED), max=h.get_block_size(nbd.SIZE_MAXIMUM),
  multi=h.can_multi_conn(), fua=h.can_fua(), trim=h.can_trim(), zero=h.can_zero(), flush=h.can_flush(),
  ro=h.is_read_only(), df=h.can_df(), structured=h.get_structured_replies_negotiated(),
  desc=h.get_export_description(), name=h.get_canonical_export_name())
print(json.dumps(r))
`);
      const info = JSON.parse(out.trim().split('\n').pop()!);
      expect(info).toEqual({
        names: [['disk0', 'the first disk'], ['ro', '']],
        size: 8 * MiB,
        min: 1,
        pref: 4096,
        max: 32 * MiB,
        multi: true,
        fua: true,
        trim: true,
        zero: true,
        flush: true,
        ro: false,
        df: true,
        structured: true,
        desc: 'the first disk',
        name: 'disk0',
      });

      const ro = await nbdsh(`
import json
h.connect_uri("nbd+unix:///ro?socket=${socket}")
print(json.dumps(dict(ro=h.is_read_only(), trim=h.can_trim(), zero=h.can_zero(), fua=h.can_fua())))
h.set_strict_mode(0)
try:
  h.pwrite(b"x" * 512, 0)
  print("WROTE")
except nbd.Error as e:
  print("errno", e.errno)
`);
      const lines = ro.trim().split('\n');
      expect(JSON.parse(lines[0]!)).toEqual({ ro: true, trim: false, zero: false, fua: false });
      // libnbd's own checks are off (strict mode 0), so EPERM comes from the server.
      expect(lines[1]).toBe('errno EPERM');
    } finally {
      await server.close();
      await second.close();
    }
    expect(await sha256File(served.imagePath)).toBe(sha256(await readFile(served.imagePath)));
  });

  it('reports errors the protocol asks for: EINVAL past the end, ENOSPC for writes past the end, unknown export', async () => {
    served = await serveImage({ sizeBytes: 4 * MiB });
    const before = await sha256File(served.imagePath);
    const out = await nbdsh(`
h.connect_uri(${JSON.stringify(served.uri)})
h.set_strict_mode(0)
def errno_of(f):
  try:
    f()
    return 0
  except nbd.Error as e:
    return e.errno
size = h.get_size()
print(errno_of(lambda: h.pread(4096, size - 512)))
print(errno_of(lambda: h.pwrite(b"z" * 4096, size - 512)))
print(errno_of(lambda: h.trim(4096, size)))
print(errno_of(lambda: h.zero(1024, size)))
print(errno_of(lambda: h.pread(512, 0, flags=0x80)))
print(errno_of(lambda: h.pread(33 * 1024 * 1024, 0)))
print(len(h.pread(512, size - 512)))
`);
    expect(out.trim().split('\n')).toEqual(['EINVAL', 'ENOSPC', 'EINVAL', 'ENOSPC', 'EINVAL', 'EOVERFLOW', '512']);
    expect(await sha256File(served.imagePath)).toBe(before);

    const unknown = await nbdsh(`
try:
  h.connect_uri("nbd+unix:///nope?socket=${served.socketPath}")
  print("connected")
except nbd.Error as e:
  print("refused")
`);
    expect(unknown.trim()).toBe('refused');
  });

  it('serves simple replies to a client that does not ask for structured ones', async () => {
    served = await serveImage({ sizeBytes: 4 * MiB });
    const expected = await readFile(served.imagePath);
    const out = await nbdsh(`
import hashlib
h.set_request_structured_replies(False)
h.connect_uri(${JSON.stringify(served.uri)})
print(h.get_structured_replies_negotiated())
h.pwrite(b"\\x99" * 65536, 65536, nbd.CMD_FLAG_FUA)
h.set_strict_mode(0)
try:
  h.pread(4096, h.get_size())
except nbd.Error as e:
  print("errno", e.errno)
print(hashlib.sha256(h.pread(h.get_size() // 2, 0) + h.pread(h.get_size() // 2, h.get_size() // 2)).hexdigest())
`);
    expected.fill(0x99, 65536, 2 * 65536);
    expect(out.trim().split('\n')).toEqual(['False', 'errno EINVAL', sha256(expected)]);
    expect(await sha256File(served.imagePath)).toBe(sha256(expected));
  });
});

describe('NBD server lifecycle', () => {
  it('close() lets requests in flight finish and reply, answers later ones ESHUTDOWN, then refuses connections', async () => {
    served = await serveImage({ sizeBytes: 64 * MiB });
    const expected = await readFile(served.imagePath);
    const client = await NbdTestClient.connect({ path: served.socketPath });
    const chunks = Array.from({ length: 48 }, () => randomBytes(MiB));
    const replies = chunks.map((data, i) => client.write(i * MiB, data));
    // Close once the server is certainly busy with this client's writes.
    await replies[0];
    const started = Date.now();
    const closing = served.server.close();
    const results = await Promise.allSettled(replies);
    await closing;
    await client.closed();
    // Graceful: it did not need the 5 s close timeout that cuts off clients that never read.
    expect(Date.now() - started).toBeLessThan(3000);
    let acknowledged = 0;
    results.forEach((r, i) => {
      if (r.status === 'fulfilled') {
        // Done (0), or refused because of the shutdown (ESHUTDOWN): nothing else.
        expect([0, 108]).toContain(r.value.error);
        if (r.value.error === 0) {
          acknowledged++;
          expected.set(chunks[i]!, i * MiB);
        }
      }
    });
    expect(acknowledged).toBeGreaterThan(0);
    // The image holds exactly the acknowledged writes: requests in flight finished, later ones
    // were refused or never started.
    await expect(NbdTestClient.connect({ path: served.socketPath })).rejects.toMatchObject({ code: expect.stringMatching(/^(ENOENT|ECONNREFUSED)$/) });
    expect(await sha256File(served.imagePath)).toBe(sha256(expected));
  });
});
