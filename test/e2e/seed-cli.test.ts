/**
 * `ferry seed` as a person runs it: export to a directory, verify, a damaged copy (verify
 * and import report it, exit 4, no manifest), repair from the source's store, restore, and
 * the refusals (another seed on the device, a wrong key) with their exit codes.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cp, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { makeSparseImage, sha256File } from '../support/images.js';
import { ferry } from '../support/cli.js';
import { tempDir } from '../support/temp.js';

const MiB = 1024 * 1024;
let dir: { path: string; cleanup: () => Promise<void> };
beforeAll(async () => (dir = await tempDir('ferry-seed-cli-')));
afterAll(async () => dir.cleanup());

describe('ferry seed', () => {
  it('export, verify, import, a damaged copy repaired from the source store', async () => {
    const p = (name: string) => join(dir.path, name);
    await makeSparseImage(p('a.img'), 16 * MiB, 5, 0.5);
    await makeSparseImage(p('b.img'), 8 * MiB, 6, 0.5);
    await writeFile(p('key'), Buffer.alloc(32, 7));

    const help = await ferry(['seed', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('ferry seed export --disk ID=PATH');

    const exported = await ferry(['seed', 'export', '--disk', `a=${p('a.img')}`, '--disk', `b=${p('b.img')}`, '--device', p('dev'), '--volume-size', '3M', '--chunk-size', '1M', '--key-file', p('key'), '-q']);
    expect(exported.stderr).toMatch(/chunks stored/);
    expect(exported.code).toBe(0);
    const seedId = exported.stdout.trim();
    expect(seedId).toMatch(/^[0-9a-f]{32}$/);

    const verified = await ferry(['seed', 'verify', p('dev'), '--key-file', p('key'), '-q']);
    expect(verified.code).toBe(0);
    expect(verified.stdout).toContain(`seed ok: ${seedId}, 2 disks`);

    // The same device again: another seed is refused, exit 8.
    const again = await ferry(['seed', 'export', '--disk', `b=${p('b.img')}`, '--device', p('dev'), '-q']);
    expect(again.code).toBe(8);
    expect(again.stderr).toContain(`already holds seed ${seedId}`);

    // A wrong key: exit 2, said as such.
    await writeFile(p('wrong'), Buffer.alloc(32, 8));
    const wrong = await ferry(['seed', 'import', p('dev'), '--store', `file:${p('dest')}`, '--key-file', p('wrong'), '-q']);
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toContain('wrong key: fingerprint mismatch');

    // A damaged copy: one byte flipped in a chunk of the first volume.
    await cp(p('dev'), p('shipped'), { recursive: true });
    const volume = p('shipped/vol-000000.tar');
    const bytes = await readFile(volume);
    bytes[512 * 4 + 100]! ^= 0x01;
    await writeFile(volume, bytes);
    const damaged = await ferry(['seed', 'verify', p('shipped'), '--key-file', p('key'), '-q']);
    expect(damaged.code).toBe(4);
    expect(damaged.stdout).toMatch(/BAD +vol-000000\.tar: volume vol-000000\.tar has SHA-256 [0-9a-f]{64}, the manifest says/);
    expect(damaged.stdout).toMatch(/CORRUPT chunk [0-9a-f]{64} in volume vol-000000\.tar fails authentication/);

    const imported = await ferry(['seed', 'import', p('shipped'), '--store', `file:${p('dest')}`, '--key-file', p('key'), '-q']);
    expect(imported.code).toBe(4);
    expect(imported.stdout).toMatch(/^missing [0-9a-f]{64}$/m);
    expect(imported.stderr).toContain('no manifest written');

    // The source's store holds the disks' chunks (its base copy, made over the network or locally).
    for (const disk of ['a', 'b']) expect((await ferry(['copy', p(`${disk}.img`), '--store', `file:${p('source-store')}`, '--chunk-size', '1M', '-q'])).code).toBe(0);
    const repaired = await ferry(['seed', 'repair', p('shipped'), '--store', `file:${p('dest')}`, '--from', `file:${p('source-store')}`]);
    expect(repaired.code).toBe(0);
    expect(repaired.stderr).toContain('1 chunks fetched');
    const lines = repaired.stdout.trim().split('\n').map((l) => l.split(' '));
    expect(lines.map((l) => l[0])).toEqual(['a', 'b']);

    for (const [disk, manifestId] of lines.map((l) => [l[0]!, l[1]!])) {
      const restored = await ferry(['restore', '--manifest', manifestId!, p(`${disk}-restored.img`), '--store', `file:${p('dest')}`, '-q']);
      expect(restored.code, restored.stderr).toBe(0);
      expect(await sha256File(p(`${disk}-restored.img`))).toBe(await sha256File(p(`${disk}.img`)));
    }
  });
});
