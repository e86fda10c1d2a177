/**
 * Fencing and replication identity, through the CLI and `ferry filter` processes, with a
 * randomized concurrent writer running into every cutover:
 *
 * - a disk migrated twice through one store (a new state directory the second time, the
 *   disk wiped in between), each time with `replica apply --follow` running during the
 *   cutover as the README's walkthrough does: each replica equals its source at the pause,
 *   with `--verify deltas`; nothing of the first migration reaches the second replica; a
 *   second applier on a followed replica is refused; the follower hands the replica to the
 *   cutover and exits once it is cut over;
 * - a cutover client killed after quiescing: the disk resumes when the lease runs out, and
 *   a second cutover meanwhile is refused (409, exit 8).
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { readdir, readFile, truncate } from 'node:fs/promises';
import { join } from 'node:path';
import { FilterControlClient } from '../../src/api/index.js';
import { ferry, startFollower, type CliResult } from '../support/cli.js';
import { startFilterProcess, type FilterProcess } from '../support/filter-process.js';
import { makeSparseImage, sha256File } from '../support/images.js';
import { NbdTestClient, nbdDevice } from '../support/nbd-client.js';
import { requireTool, run } from '../support/nbd-tools.js';
import { RandomWorkload } from '../support/random-workload.js';
import { tempDir } from '../support/temp.js';

const MiB = 1024 * 1024;
const NBD_EPERM = 1;
let dir: { path: string; cleanup: () => Promise<void> };
const children: ChildProcess[] = [];

beforeAll(async () => {
  await requireTool('qemu-io');
  dir = await tempDir('ferry-fencing-');
});
afterAll(async () => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await dir.cleanup();
});

async function filterOn(image: string, stateDir: string, store: string): Promise<FilterProcess> {
  const filter = await startFilterProcess({ image, stateDir, store, args: ['--chunk-size', '1M'] });
  children.push(filter.child);
  return filter;
}

/**
 * Four concurrent writers of seeded random writes, zeroes and trims over the disk's NBD
 * socket, until the filter refuses their IO (the fence) or `stop` fires. Resolves with
 * whether the fence stopped them.
 */
async function writeUntilFenced(socketPath: string, seed: number, stop: AbortSignal): Promise<{ fenced: boolean; ops: number }> {
  const client = await NbdTestClient.connect({ path: socketPath, exportName: 'd0' });
  const workload = new RandomWorkload({ seed, sizeBytes: client.sizeBytes, writers: 4, opsPerWriter: 1_000_000, maxIoBytes: 256 * 1024, readFraction: 0 });
  let ops = 0;
  try {
    await workload.run(nbdDevice(client), { signal: stop, onComplete: () => void ops++ });
    return { fenced: false, ops };
  } catch (err) {
    if ((err as { nbdError?: number }).nbdError === NBD_EPERM) return { fenced: true, ops };
    throw err;
  } finally {
    client.socket.destroy();
  }
}

async function baseCopy(filter: FilterProcess): Promise<string> {
  const copy = await ferry(['base-copy', '--control', filter.control, '--disk', 'd0', '-q']);
  expect(copy.code, copy.stderr).toBe(0);
  return copy.stdout.trim();
}

/** Starts `replica apply --follow`; resolves once it has applied a first delta. */
async function follow(store: string, replica: string): Promise<{ child: ChildProcess; done: Promise<CliResult> }> {
  const follower = await startFollower(store, replica);
  children.push(follower.child);
  let out = '';
  follower.child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  for (let i = 0; i < 600 && !/applied [1-9]/.test(out); i++) await new Promise((r) => setTimeout(r, 50));
  expect(out, 'the follower applied nothing').toMatch(/applied [1-9]/);
  return follower;
}

async function waitFor(what: string, condition: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 1200; i++) {
    if (await condition()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

async function replicaState(replica: string): Promise<{ replication: string; nextSeq: number; cutover?: { finalSeq: number } }> {
  return JSON.parse(await readFile(`${replica}.ferry-replica.json`, 'utf8')) as { replication: string; nextSeq: number; cutover?: { finalSeq: number } };
}

/** One migration with a writer running into the cutover and a follower running through it. */
async function migrate(options: { image: string; stateDir: string; store: string; replica: string; seed: number; pastSeq?: number }) {
  const filter = await filterOn(options.image, options.stateDir, options.store);
  const client = new FilterControlClient(filter.control);
  const stopWriter = new AbortController();
  const writer = writeUntilFenced(filter.socketPath, options.seed, stopWriter.signal);
  try {
    const manifestId = await baseCopy(filter);
    const init = await ferry(['replica', 'init', '--store', options.store, '--disk', 'd0', '--manifest', manifestId, options.replica, '-q']);
    expect(init.code, init.stderr).toBe(0);
    const follower = await follow(options.store, options.replica);
    // Write on until replay has passed the given seq: where the first migration's seqs ended.
    if (options.pastSeq !== undefined) await waitFor(`seq ${options.pastSeq}`, async () => (await client.disk('d0')).tracker.currentSeq > options.pastSeq! + 20);

    const second = await ferry(['replica', 'apply', '--store', options.store, options.replica]);
    expect(second.code).toBe(8); // conflict
    expect(second.stderr).toMatch(new RegExp(`replica ${options.replica} is in use by pid ${follower.child.pid} \\(ferry replica apply --follow\\)`));

    const cutover = await ferry(['cutover', '--control', filter.control, '--store', options.store, '--replica', options.replica, '--verify', 'deltas', '--json']);
    expect(cutover.code, cutover.stderr).toBe(0);
    const result = JSON.parse(cutover.stdout) as { finalSeq: number; replication: string; warnings: string[] };
    expect(result.warnings).toEqual([]);

    // The writer ran into the fence; the follower took the replica back and saw it cut over.
    expect(await writer).toMatchObject({ fenced: true });
    const followed = await follower.done;
    expect(followed.code, followed.stderr).toBe(0);
    expect(followed.stdout).toContain(`was cut over at seq ${result.finalSeq}`);

    expect(await sha256File(options.replica)).toBe(await sha256File(options.image));
    expect(await replicaState(options.replica)).toMatchObject({ replication: result.replication, nextSeq: result.finalSeq, cutover: { finalSeq: result.finalSeq } });
    // The store keeps only the mark of the replication that was cut over.
    expect(await readdir(join(options.store.slice('file:'.length), 'deltas', 'd0', result.replication))).toEqual(['cutover.json']);
    return result;
  } finally {
    stopWriter.abort();
    await writer.catch(() => undefined);
    expect((await filter.stop()).code).toBe(0);
  }
}

it.each([101, 202])('a disk migrated twice through one store: each replica equals its source (seed %i)', async (seed) => {
  const image = join(dir.path, `twice-${seed}.img`);
  const store = `file:${join(dir.path, `twice-${seed}-store`)}`;
  await makeSparseImage(image, 32 * MiB, seed, 0.5);

  const first = await migrate({ image, store, stateDir: join(dir.path, `twice-${seed}-state-1`), replica: join(dir.path, `twice-${seed}-replica-1.img`), seed });

  // Between the migrations the disk is wiped (say, the VM was reinstalled).
  await truncate(image, 0);
  await truncate(image, 32 * MiB);

  // The same disk id, a new state directory, the same store: a new replication whose seqs
  // start again from the beginning and run past the first one's.
  const second = await migrate({
    image,
    store,
    stateDir: join(dir.path, `twice-${seed}-state-2`),
    replica: join(dir.path, `twice-${seed}-replica-2.img`),
    seed: seed + 1,
    pastSeq: first.finalSeq,
  });
  expect(second.replication).not.toBe(first.replication);
  expect(second.finalSeq).toBeGreaterThan(first.finalSeq);
});

it('a cutover client killed after quiescing: the disk resumes when its lease runs out; a second cutover meanwhile gets 409', async () => {
  const image = join(dir.path, 'lease.img');
  const store = `file:${join(dir.path, 'lease-store')}`;
  const replica = join(dir.path, 'lease-replica.img');
  await makeSparseImage(image, 32 * MiB, 7, 0.3);
  const filter = await filterOn(image, join(dir.path, 'lease-state'), store);
  const client = new FilterControlClient(filter.control);
  try {
    const manifestId = await baseCopy(filter);
    expect((await ferry(['replica', 'init', '--store', store, '--disk', 'd0', '--manifest', manifestId, replica, '-q'])).code).toBe(0);

    // A cutover client (the same port `ferry cutover` uses) quiesces with an 8 s lease, renews
    // it every third of that, and says so.
    const api = new URL('../../dist/api/index.js', import.meta.url).href;
    const script = `
      const { FilterControlClient } = await import(${JSON.stringify(api)});
      const source = new FilterControlClient(${JSON.stringify(filter.control)}).cutoverSource('d0', 'doomed cutover', 8000);
      await source.quiesce();
      console.log('quiesced');
      setInterval(() => {}, 1000);`;
    const doomed = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    children.push(doomed);
    let said = '';
    doomed.stdout.on('data', (d: Buffer) => (said += d.toString()));
    await waitFor('the doomed client to quiesce', async () => said.includes('quiesced'));
    expect((await client.disk('d0')).quiesce).toMatchObject({ owner: 'doomed cutover', leaseMs: 8000 });

    // A write waits while the disk is quiesced.
    let written = false;
    const held = run('qemu-io', ['-f', 'raw', '-c', 'write -P 0x5a 0 64k', filter.uri]).then(() => (written = true));

    // While its owner lives and renews, another cutover is refused and changes nothing.
    const refused = await ferry(['cutover', '--control', filter.control, '--store', store, '--replica', replica]);
    expect(refused.code).toBe(8);
    expect(refused.stderr).toContain('disk d0 is quiesced by "doomed cutover"');
    expect((await client.disk('d0')).quiesce?.owner).toBe('doomed cutover');

    // The owner dies: renewals stop. Until the lease runs out, the disk stays held and others
    // are refused; then it resumes by itself, and the held write goes through.
    doomed.kill('SIGKILL');
    await expect(client.quiesce('d0', 'someone else')).rejects.toMatchObject({ code: 'conflict' });
    await waitFor('the lease to run out', async () => (await client.disk('d0')).quiesce === undefined);
    await held;
    expect(written).toBe(true);
    expect((await client.disk('d0')).quiesced).toBe(false);
    expect(filter.stderr()).toContain('quiesce lease ran out: the disk resumes');
    // The dead owner's quiesce is over for good: it can neither drain nor fence.
    await expect(client.drain('d0', 'doomed cutover')).rejects.toMatchObject({ code: 'conflict', message: expect.stringContaining('ran out') });

    // A new cutover then succeeds.
    const cutover = await ferry(['cutover', '--control', filter.control, '--store', store, '--replica', replica, '--verify', 'full']);
    expect(cutover.code, cutover.stderr).toBe(0);
    expect(await sha256File(replica)).toBe(await sha256File(image));
  } finally {
    expect((await filter.stop()).code).toBe(0);
  }
});
