/**
 * `ferry agent` as a destination host: started with no disks and no store, it answers the
 * replica routes on its control socket, follows a replica added there (restored from a live
 * disk's base copy, caught up after the source drains) and follows it again after a restart.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { FilterControlClient } from '../../src/api/index.js';
import { startFerry, type CliResult } from '../support/cli.js';
import { sha256File } from '../support/images.js';
import { RandomWorkload } from '../support/random-workload.js';
import { drainSource, startTestReplication } from '../support/replication.js';
import { tempDir } from '../support/temp.js';

const MiB = 1024 * 1024;
let dir: { path: string; cleanup: () => Promise<void> };
const running: ChildProcess[] = [];
beforeAll(async () => (dir = await tempDir('ferry-agent-replicas-')));
afterAll(async () => {
  for (const child of running) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await dir.cleanup();
});

async function startAgent(stateDir: string): Promise<{ control: string; stop: () => Promise<CliResult> }> {
  const { child, done } = startFerry(['agent', '--state-dir', stateDir]);
  running.push(child);
  let stdout = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  let exited: CliResult | undefined;
  void done.then((r) => (exited = r));
  for (let i = 0; i < 300 && !/^control /m.test(stdout); i++) {
    if (exited) throw new Error(`ferry agent exited early (${exited.code}): ${exited.stderr}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const control = /^control (\S+)$/m.exec(stdout)?.[1];
  if (!control) throw new Error(`ferry agent did not print its control socket: ${stdout}`);
  expect(stdout).not.toMatch(/^export /m);
  return {
    control,
    stop: () => {
      child.kill('SIGTERM');
      return done;
    },
  };
}

async function until(condition: () => Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 1500; i++) {
    if (await condition()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`timed out waiting for ${what}`);
}

it('starts with no disks, follows a replica added over its control socket, and again after a restart', async () => {
  const stateDir = join(dir.path, 'agent');
  const sizeBytes = 8 * MiB;
  const { rep, sourcePath, storeDir } = await startTestReplication(join(dir.path, 'src'), { sizeBytes, seed: 5, journal: { segmentMaxAgeMs: 30 } });
  const drain = () => drainSource(rep);
  const workload = (n: number) => new RandomWorkload({ seed: 500 + n, sizeBytes, writers: 2, opsPerWriter: 20, maxIoBytes: MiB }).run(rep.filter);
  const replicaPath = join(dir.path, 'replica.img');
  try {
    let agent = await startAgent(stateDir);
    let client = new FilterControlClient(agent.control);
    expect(await client.listReplicas()).toEqual([]);
    expect((await client.listDisks()).disks).toEqual([]);

    const [copy] = await Promise.all([rep.baseCopy(), workload(1)]);
    const added = await client.addReplica({ id: 'r1', disk: 'disk0', store: `file:${storeDir}`, manifest: copy.manifestId, path: replicaPath });
    expect(added).toMatchObject({ id: 'r1', path: replicaPath });
    await expect(client.replica('nope')).rejects.toMatchObject({ code: 'not-found' });

    const caughtUp = async (finalSeq: number) => {
      const s = await client.replica('r1');
      return s.state === 'following' && s.nextSeq! >= finalSeq && s.consistent === true;
    };
    let finalSeq = await drain();
    await until(() => caughtUp(finalSeq), 'the replica to catch up');
    expect(await sha256File(replicaPath)).toBe(await sha256File(sourcePath));

    expect((await agent.stop()).code).toBe(0);
    await workload(2);
    agent = await startAgent(stateDir);
    client = new FilterControlClient(agent.control);
    finalSeq = await drain();
    await until(() => caughtUp(finalSeq), 'the replica to catch up after the restart');
    expect(await sha256File(replicaPath)).toBe(await sha256File(sourcePath));

    expect(await client.removeReplica('r1')).toMatchObject({ id: 'r1', state: 'stopped' });
    expect(await client.listReplicas()).toEqual([]);
    expect((await agent.stop()).code).toBe(0);
  } finally {
    await rep.close();
  }
});
