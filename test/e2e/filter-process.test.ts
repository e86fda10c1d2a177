/**
 * `ferry filter` as its own long-lived process, driven the way an operator would: qemu-io
 * writes through the NBD export, a base copy started over the control socket, `ferry
 * replica init`, more writes, `ferry cutover`, `ferry status`, SIGTERM. The replica must
 * equal the source byte for byte, and the filter must stop cleanly (no full resync needed
 * after a restart). A cutover against a broken store must leave the source running.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { ChildProcess } from 'node:child_process';
import { request } from 'node:http';
import { readFile, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FilterControlClient, type FilterDiskList } from '../../src/api/index.js';
import { ferry, type CliResult } from '../support/cli.js';
import { startFilterProcess, type FilterProcess } from '../support/filter-process.js';
import { makeSparseImage, sha256File } from '../support/images.js';
import { requireTool, run } from '../support/nbd-tools.js';
import { tempDir } from '../support/temp.js';

const MiB = 1024 * 1024;
let dir: { path: string; cleanup: () => Promise<void> };
const running: ChildProcess[] = [];

beforeAll(async () => {
  await requireTool('qemu-io');
  dir = await tempDir('ferry-filter-');
});
afterAll(async () => {
  for (const child of running) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await dir.cleanup();
});

interface Filter extends FilterProcess {
  stateDir: string;
  store: string;
  storeDir: string;
  image: string;
}

/**
 * Starts `ferry filter` on a fresh image (or, with `restart`, on the one from before, with
 * its state); resolves once it has printed its sockets.
 */
async function startFilter(name: string, seed: number, restart = false): Promise<Filter> {
  const base = join(dir.path, name);
  const image = `${base}.img`;
  const stateDir = `${base}-state`;
  const storeDir = `${base}-store`;
  if (!restart) await makeSparseImage(image, 32 * MiB, seed, 0.3);
  const store = `file:${storeDir}`;
  const filter = await startFilterProcess({ image, stateDir, store, args: ['--chunk-size', '1M'] });
  running.push(filter.child);
  expect(filter.uri).toBe(`nbd+unix:///d0?socket=${join(stateDir, 'd0.sock')}`);
  return { ...filter, stateDir, store, storeDir, image };
}

/** One qemu-io run over the export: each command a separate -c. */
async function qemuIo(uri: string, commands: string[], timeoutMs = 30_000): Promise<string> {
  const result = await run('qemu-io', ['-f', 'raw', ...commands.flatMap((c) => ['-c', c]), uri], { timeoutMs });
  expect(result.stderr).not.toMatch(/error|failed/i);
  return result.stdout;
}

/** A round of writes, different each round: data, overlapping data, zeroes, discards. */
function round(n: number): string[] {
  const p = (k: number) => `0x${((n * 16 + k) % 255 + 1).toString(16)}`;
  return [
    `write -P ${p(1)} ${(n * 3) % 30}M 1M`,
    `write -P ${p(2)} ${(n * 3) % 30}M 4k`, // overlaps the one before: order matters
    `write -P ${p(3)} ${(n * 5 + 1) % 31}M 300k`,
    `write -z ${(n * 7 + 2) % 31}M 128k`,
    `discard ${(n * 11 + 3) % 31}M 64k`,
    `write -P ${p(4)} ${n * 4096 + 512} 512`,
    'flush',
  ];
}

async function waitForBaseCopy(client: FilterControlClient): Promise<string> {
  for (let i = 0; i < 600; i++) {
    const copy = await client.baseCopy('d0');
    if (copy.state === 'done') return copy.manifestId!;
    if (copy.state === 'failed') throw new Error(`base copy failed: ${copy.error?.message}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('base copy did not finish');
}

/** A raw request on the control socket, for checking statuses and bodies as sent. */
function rawRequest(socketPath: string, method: string, path: string, body?: string): Promise<{ status: number; body: unknown }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, method, path, headers: { 'content-type': 'application/json' } }, (res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as unknown }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function stop(filter: Filter): Promise<CliResult> {
  return filter.stop();
}

it('filter process: writes over NBD, base copy, replica, cutover, status, clean SIGTERM', async () => {
  const filter = await startFilter('main', 41);
  const client = new FilterControlClient(filter.control);
  const replica = join(dir.path, 'main-replica.img');

  for (let n = 1; n <= 3; n++) await qemuIo(filter.uri, round(n));

  // The base copy runs in the filter's background while the VM (qemu-io) keeps writing.
  const started = await client.startBaseCopy('d0', { concurrency: 2 });
  expect(started.state).toBe('running');
  await Promise.all([qemuIo(filter.uri, round(4)), qemuIo(filter.uri, round(5))]);
  const manifestId = await waitForBaseCopy(client);

  const init = await ferry(['replica', 'init', '--store', filter.store, '--disk', 'd0', '--manifest', manifestId, replica, '-q']);
  expect(init.stderr).toBe('');
  expect(init.code).toBe(0);
  expect(init.stdout).toContain('replay from seq');

  for (let n = 6; n <= 8; n++) await qemuIo(filter.uri, round(n));
  const apply = await ferry(['replica', 'apply', '--store', filter.store, replica]);
  expect(apply.code).toBe(0);
  expect(apply.stdout).toMatch(/applied \d+ delta/);
  // Parked in bitmap mode (say, a link too slow), writes only mark blocks dirty; back to
  // streaming, the filter ships a resync and the replica catches up through it.
  expect(await client.setMode('d0', 'bitmap', 'test')).toBe('bitmap');
  await qemuIo(filter.uri, round(9));
  const parked = await client.disk('d0');
  expect(parked.tracker).toMatchObject({ mode: 'bitmap', consistent: false });
  expect(parked.tracker.dirtyBlocks).toBeGreaterThan(0);
  expect(await client.setRate('100M/s')).toBe(100_000_000);
  await client.setMode('d0', 'streaming');
  for (let i = 0; i < 200 && !(await client.disk('d0')).tracker.consistent; i++) await new Promise((r) => setTimeout(r, 50));
  expect((await client.disk('d0')).tracker).toMatchObject({ mode: 'streaming', consistent: true, dirtyBlocks: 0 });
  expect(await client.setRate('unlimited')).toBe(0);
  for (let n = 10; n <= 11; n++) await qemuIo(filter.uri, round(n));

  const cutover = await ferry(['cutover', '--disk', 'd0', '--control', filter.control, '--store', filter.store, '--replica', replica, '--verify', 'full', '--json']);
  expect(cutover.stderr).toBe('');
  expect(cutover.code).toBe(0);
  const result = JSON.parse(cutover.stdout) as { finalSeq: number; pauseMs: number; verified: string };
  expect(result.verified).toBe('full');
  expect(result.finalSeq).toBeGreaterThan(0);
  expect(result.pauseMs).toBeGreaterThanOrEqual(0);
  expect(result.pauseMs).toBeLessThan(30_000);

  // The source is fenced: nothing writes to it now.
  expect(await sha256File(replica)).toBe(await sha256File(filter.image));

  const status = await ferry(['status', '--control', filter.control, '--json']);
  expect(status.code).toBe(0);
  const { disks } = JSON.parse(status.stdout) as FilterDiskList;
  expect(disks).toHaveLength(1);
  const d0 = disks[0]!;
  expect(d0.id).toBe('d0');
  expect(d0.quiesced).toBe(false); // the quiesce became a fence
  expect(d0.fence).toMatchObject({ disk: 'd0', finalSeq: result.finalSeq, replication: d0.tracker.replication });
  expect(d0.figures).toMatchObject({ mode: 'streaming', consistent: true, lagSeq: 0, backlogBytes: 0, sourceSeq: result.finalSeq, replicaSeq: result.finalSeq });
  expect(d0.figures.lagSeconds).toBe(0);
  expect(d0.figures.writeDelayMs).toBe(0);
  expect(d0.figures.predictedPauseMs).toBe(0);
  expect(d0.figures.drainRateBytesPerSec).toBeGreaterThan(0);
  expect(d0.tracker).toMatchObject({ mode: 'streaming', consistent: true, dirtyBlocks: 0, unshippedJournalBytes: 0, sealedSegments: 0 });
  expect(d0.shipper.deltasShipped).toBeGreaterThan(0);
  expect(d0.nbd.writes).toBeGreaterThanOrEqual(11 * 4);
  expect(d0.nbd.errors).toBe(0);
  expect(d0.baseCopy).toMatchObject({ state: 'done', manifestId });
  const text = await ferry(['status', '--control', filter.control]);
  expect(text.code).toBe(0);
  expect(text.stdout).toContain('FENCED');
  expect(text.stdout).toContain('ferry fence release');

  // Bad requests name the field and the value received; unknown disks are 404s.
  const badMode = await rawRequest(filter.control, 'PUT', '/v1/disks/d0/mode', '{"mode":"turbo"}');
  expect(badMode.status).toBe(400);
  expect(badMode.body).toMatchObject({ error: { code: 'bad-input' } });
  expect((badMode.body as { error: { message: string } }).error.message).toMatch(/^mode: .*"turbo"/);
  const badRate = await rawRequest(filter.control, 'PUT', '/v1/rate', '{"rate":"fast"}');
  expect(badRate.status).toBe(400);
  expect((badRate.body as { error: { message: string } }).error.message).toMatch(/^rate: .*"fast"/);
  const badJson = await rawRequest(filter.control, 'POST', '/v1/disks/d0/base-copy', '{oops');
  expect(badJson.status).toBe(400);
  expect((badJson.body as { error: { message: string } }).error.message).toMatch(/^body: /);
  const missing = await rawRequest(filter.control, 'GET', '/v1/disks/nope');
  expect(missing.status).toBe(404);
  expect(missing.body).toMatchObject({ error: { code: 'not-found' } });

  // SIGTERM: a clean stop, journal kept, tracker state clean (no full resync on restart).
  const stopped = await stop(filter);
  expect(stopped.code).toBe(0);
  expect(stopped.stderr).toContain('filter stopped cleanly');
  const state = JSON.parse(await readFile(join(filter.stateDir, 'd0', 'tracker-state.json'), 'utf8')) as { clean: boolean; mode: string; consistent: boolean };
  expect(state).toMatchObject({ clean: true, mode: 'streaming', consistent: true });
  await expect(stat(join(filter.stateDir, 'd0', 'journal', 'journal-floor'))).resolves.toBeTruthy();

  // Restarted on the same state, it trusts its tracker (streaming, consistent, nothing
  // dirty) and the disk is still fenced: a client is turned away, told why and what to do.
  const again = await startFilter('main', 41, true);
  const againClient = new FilterControlClient(again.control);
  const after = await againClient.disk('d0');
  expect(after.tracker).toMatchObject({ mode: 'streaming', consistent: true, dirtyBlocks: 0, currentSeq: result.finalSeq, replication: d0.tracker.replication });
  expect(after.fence).toEqual(d0.fence);
  const refused = await run('qemu-io', ['-f', 'raw', '-c', 'write -P 0x11 0 4k', again.uri], { timeoutMs: 30_000, allowFailure: true });
  expect(refused.code).not.toBe(0);
  expect(refused.stderr).toContain('disk d0 was cut over');
  expect(refused.stderr).toContain('ferry fence release');
  expect(await sha256File(filter.image)).toBe(await sha256File(replica));
  const fencedStatus = await ferry(['status', '--control', again.control]);
  expect(fencedStatus.stdout).toMatch(/^d0 {2}FENCED/m);
  // A second cutover of a cut-over disk is refused.
  const twice = await ferry(['cutover', '--control', again.control, '--store', filter.store, '--replica', replica]);
  expect(twice.code).toBe(7);
  expect(twice.stderr).toContain('already cut over');

  // The operator releases the fence on purpose: IO flows again, as a new replication.
  const release = await ferry(['fence', 'release', '--control', again.control, '--disk', 'd0', '--reason', 'failback test', '--json']);
  expect(release.code).toBe(0);
  const released = JSON.parse(release.stdout) as { replication: string };
  expect(released.replication).toMatch(/^[0-9a-f]{32}$/);
  expect(released.replication).not.toBe(d0.tracker.replication);
  await qemuIo(again.uri, round(12));
  expect((await againClient.disk('d0')).fence).toBeUndefined();
  expect((await stop(again)).code).toBe(0);
});

it('a cutover against a filter whose store is broken resumes the source, and a later one succeeds', async () => {
  const filter = await startFilter('broken', 42);
  const client = new FilterControlClient(filter.control);
  const replica = join(dir.path, 'broken-replica.img');
  // The destination reaches the same store by its own path, which stays good when the
  // filter's breaks.
  const destLink = join(dir.path, 'broken-store-dest');
  await symlink(filter.storeDir, destLink);
  const destStore = `file:${destLink}`;

  await qemuIo(filter.uri, round(1));
  const baseCopy = await ferry(['base-copy', '--control', filter.control, '--disk', 'd0', '-q']);
  expect(baseCopy.code).toBe(0);
  const manifestId = baseCopy.stdout.trim();
  expect(manifestId).toMatch(/^[0-9a-f]{64}$/);
  expect((await ferry(['replica', 'init', '--store', destStore, '--disk', 'd0', '--manifest', manifestId, replica, '-q'])).code).toBe(0);
  await qemuIo(filter.uri, round(2));

  // The filter's store goes away: its directory is replaced by a file.
  await rename(filter.storeDir, `${filter.storeDir}.away`);
  await writeFile(filter.storeDir, 'not a directory');
  await rm(destLink);
  await symlink(`${filter.storeDir}.away`, destLink);
  await qemuIo(filter.uri, round(3)); // the VM keeps writing; shipping fails and retries

  // A cutover that cannot reach the store itself stops before pausing anything.
  const early = await ferry(['cutover', '--control', filter.control, '--store', filter.store, '--replica', replica]);
  expect(early.code).toBe(6);
  expect((await client.disk('d0')).quiesced).toBe(false);

  // One that fails in the filter's final drain resumes the source.
  const failed = await ferry(['cutover', '--disk', 'd0', '--control', filter.control, '--store', destStore, '--replica', replica]);
  expect(failed.code).toBe(6); // store-unavailable
  expect(failed.stderr).toContain('disk d0: cutover failed, the source was resumed');

  // The source runs: a write goes through (it would hang on a paused filter).
  await qemuIo(filter.uri, round(4), 20_000);
  const d0 = await client.disk('d0');
  expect(d0.quiesced).toBe(false);
  expect(d0.shipper.lastError).toBeTruthy();

  // The store comes back: nothing was lost, the next cutover converges.
  await rm(filter.storeDir);
  await rename(`${filter.storeDir}.away`, filter.storeDir);
  await rm(destLink);
  await symlink(filter.storeDir, destLink);
  await qemuIo(filter.uri, round(5));
  const ok = await ferry(['cutover', '--control', filter.control, '--store', destStore, '--replica', replica, '--verify', 'full']);
  expect(ok.stderr).toContain('The source is fenced');
  expect(ok.code).toBe(0);
  expect(ok.stdout).toMatch(/cutover of disk d0 done: source paused \d+ ms/);
  expect(await sha256File(replica)).toBe(await sha256File(filter.image));

  // A second cutover of a cut-over disk is refused, and leaves it fenced.
  const again = await ferry(['cutover', '--control', filter.control, '--store', destStore, '--replica', replica]);
  expect(again.code).toBe(7);
  expect(again.stderr).toContain('already cut over');
  expect((await client.disk('d0')).fence).toBeDefined();

  expect((await stop(filter)).code).toBe(0);
});

it('a live seed through the filter: export while the VM writes, ship, import, catch up, cut over', async () => {
  const filter = await startFilter('seed', 51);
  const client = new FilterControlClient(filter.control);
  const device = join(dir.path, 'seed-device');
  const shipped = join(dir.path, 'seed-device-at-destination');
  const replica = join(dir.path, 'seed-replica.img');
  await qemuIo(filter.uri, round(1));

  // Export while the VM keeps writing; the disk is parked in bitmap mode for the trip.
  const exporting = ferry(['seed', 'export', '--control', filter.control, '--device', device, '--volume-size', '8M', '-q']);
  await qemuIo(filter.uri, round(2));
  const exported = await exporting;
  expect(exported.code, exported.stderr).toBe(0);
  expect(exported.stdout.trim()).toMatch(/^[0-9a-f]{32}$/); // the seed id
  const parked = await client.disk('d0');
  expect(parked.tracker.mode).toBe('bitmap');
  await qemuIo(filter.uri, round(3)); // written while the seed travels: only marked dirty

  await run('cp', ['-r', device, shipped]);
  const imported = await ferry(['seed', 'import', shipped, '--store', filter.store, '--json', '-q']);
  expect(imported.code, imported.stderr).toBe(0);
  const manifestId = (JSON.parse(imported.stdout) as { manifests: Array<{ manifestId: string }> }).manifests[0]!.manifestId;
  expect((await ferry(['replica', 'init', '--store', filter.store, '--disk', 'd0', '--manifest', manifestId, replica, '-q'])).code).toBe(0);

  // Back to streaming: the blocks dirtied since the seed's epoch go as a resync.
  await client.setMode('d0', 'streaming');
  await qemuIo(filter.uri, round(4));
  const cutover = await ferry(['cutover', '--control', filter.control, '--store', filter.store, '--replica', replica, '--verify', 'full']);
  expect(cutover.code, cutover.stderr).toBe(0);
  expect(await sha256File(replica)).toBe(await sha256File(filter.image));
  expect((await stop(filter)).code).toBe(0);
});

it('every new command has --help', async () => {
  for (const name of ['filter', 'replica', 'cutover', 'status']) {
    const help = await ferry([name, '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain(`Usage: ferry ${name}`);
  }
  const bad = await ferry(['filter', '--disk', 'noequals', '--state-dir', dir.path, '--store', `file:${dir.path}/s`]);
  expect(bad.code).toBe(2);
  expect(bad.stderr).toContain('"noequals"');
});
