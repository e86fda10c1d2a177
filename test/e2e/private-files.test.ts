/**
 * Guest data is private to its owner from the moment it exists: with a permissive umask
 * (022, as most shells have), everything a filter, a base copy, a replica and a seed export
 * create (journal segments and state, NBD and control sockets, stored chunks and manifests,
 * the replica, seed volumes and seed.json, and every folder holding them) has no group or
 * other permissions.
 */
import { lstat, mkdir, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ferry } from '../support/cli.js';
import { startFilterProcess } from '../support/filter-process.js';
import { makeSparseImage } from '../support/images.js';
import { NbdTestClient, nbdDevice } from '../support/nbd-client.js';
import { tempDir } from '../support/temp.js';

const MiB = 1024 * 1024;
let dir: Awaited<ReturnType<typeof tempDir>>;
let umask: number;

beforeAll(async () => {
  dir = await tempDir('ferry-private-');
  umask = process.umask(0o022); // the children inherit it
});
afterAll(async () => {
  process.umask(umask);
  await dir.cleanup();
});

/** Every path under `root` (itself included) with its permission bits. */
async function modes(root: string): Promise<Array<[string, number]>> {
  const out: Array<[string, number]> = [[root, (await lstat(root)).mode & 0o777]];
  for (const entry of await readdir(root, { withFileTypes: true })) {
    const path = join(root, entry.name);
    if (entry.isDirectory()) out.push(...(await modes(path)));
    else out.push([path, (await lstat(path)).mode & 0o777]);
  }
  return out;
}

it('creates journals, sockets, chunks, replicas and seed volumes private to their owner', async () => {
  const image = join(dir.path, 'd0.img');
  await makeSparseImage(image, 8 * MiB, 3);
  const state = join(dir.path, 'state');
  const storeDir = join(dir.path, 'store');
  const filter = await startFilterProcess({ image, stateDir: state, store: `file:${storeDir}`, args: ['--chunk-size', '1M'] });
  try {
    // Writes make journal segments.
    const client = await NbdTestClient.connect({ path: filter.socketPath, exportName: 'd0' });
    const disk = nbdDevice(client);
    for (let i = 0; i < 8; i++) await disk.write(Buffer.alloc(64 * 1024, i + 1), i * MiB);
    await disk.flush();
    await disk.close();
    const copy = await ferry(['base-copy', '--control', filter.control, '--disk', 'd0', '-q']);
    expect(copy.code, copy.stderr).toBe(0);
    const replica = join(dir.path, 'replica', 'd0.img');
    const initArgs = ['replica', 'init', '--store', `file:${storeDir}`, '--disk', 'd0', '--manifest', copy.stdout.trim(), replica, '-q'];
    const nowhere = await ferry(initArgs); // its folder does not exist yet: said so, not an internal error
    expect(nowhere.code).toBe(3);
    expect(nowhere.stderr).toContain(`cannot create disk ${replica}.ferry-partial: its directory ${join(dir.path, 'replica')} does not exist`);
    await mkdir(join(dir.path, 'replica'), { mode: 0o700 });
    const init = await ferry(initArgs);
    expect(init.code, init.stderr).toBe(0);
    const device = join(dir.path, 'seed');
    const seed = await ferry(['seed', 'export', '--control', filter.control, '--device', device, '-q']);
    expect(seed.code, seed.stderr).toBe(0);

    const everything = [...(await modes(state)), ...(await modes(storeDir)), ...(await modes(join(dir.path, 'replica'))), ...(await modes(device))];
    expect(everything.some(([p]) => p.endsWith('.sock'))).toBe(true);
    expect(everything.some(([p]) => /chunks\//.test(p))).toBe(true);
    expect(everything.filter(([, mode]) => (mode & 0o077) !== 0).map(([p, mode]) => `${p} ${mode.toString(8)}`)).toEqual([]);
  } finally {
    await filter.stop();
  }
});
