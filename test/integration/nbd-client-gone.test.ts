/**
 * An NBD client gone in the middle of a write (a VM killed, a connection cut while the
 * payload was on its way): the partial write never reaches the disk or the journal, the
 * filter goes on serving, and later writes from another client replicate exactly.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { FilterService, initReplica } from '../../src/migrate/index.js';
import { FileStore, Repository } from '../../src/store/index.js';
import { makeSparseImage, sha256File } from '../support/images.js';
import { NbdTestClient, nbdDevice } from '../support/nbd-client.js';
import { RandomWorkload } from '../support/random-workload.js';
import { tempDir } from '../support/temp.js';

const MiB = 1024 * 1024;
let dir: Awaited<ReturnType<typeof tempDir>>;
beforeAll(async () => (dir = await tempDir('ferry-client-gone-')));
afterAll(async () => dir.cleanup());

it('a write cut off half-way changes nothing, and the filter serves on (seed 31)', async () => {
  const base = join(dir.path, 'g');
  const sizeBytes = 8 * MiB;
  await makeSparseImage(`${base}.img`, sizeBytes, 31);
  const repo = await Repository.openOrInit(new FileStore(`${base}-store`), MiB);
  const service = await FilterService.start({ disks: [{ id: 'd0', path: `${base}.img` }], stateDir: `${base}-state`, socketDir: `${base}-state`, repo });
  try {
    const socketPath = service.status('d0').socketPath;
    const copy = service.startBaseCopy('d0');
    expect(copy.state).toBe('running');
    for (;;) {
      const s = service.baseCopyStatus('d0');
      if (s.state !== 'running') break;
      await new Promise((r) => setTimeout(r, 20));
    }
    const manifestId = service.baseCopyStatus('d0').manifestId!;
    const before = await readFile(`${base}.img`);
    const seqBefore = service.status('d0').tracker.currentSeq;

    // Half of a 1 MiB write's bytes, then the connection is gone.
    const doomed = await NbdTestClient.connect({ path: socketPath, exportName: 'd0' });
    doomed.send = (bytes) => void doomed.socket.write(bytes.subarray(0, 28 + 512 * 1024));
    void doomed.write(2 * MiB, Buffer.alloc(MiB, 0xab)).catch(() => {});
    await new Promise((r) => setTimeout(r, 50)); // let the bytes reach the server
    doomed.socket.destroy();
    await expect.poll(() => service.status('d0').nbd.connectionsActive).toBe(0);
    expect(service.status('d0').tracker.currentSeq).toBe(seqBefore);
    expect((await readFile(`${base}.img`)).equals(before)).toBe(true);

    // Another client writes on; the replica follows exactly.
    const client = await NbdTestClient.connect({ path: socketPath, exportName: 'd0' });
    const disk = nbdDevice(client);
    await new RandomWorkload({ seed: 3100, sizeBytes, writers: 2, opsPerWriter: 30, maxIoBytes: MiB }).run(disk);
    await disk.flush();
    await disk.close();
    const owner = 'test';
    await service.quiesce('d0', owner);
    const { finalSeq } = await service.drainFinal('d0', owner);
    const replicaPath = `${base}-replica.img`;
    const applier = await initReplica({ repo, diskId: 'd0', manifestId, replicaPath });
    try {
      await applier.applyUntil(finalSeq);
    } finally {
      await applier.close();
    }
    service.resume('d0', { owner });
    expect(await sha256File(replicaPath)).toBe(await sha256File(`${base}.img`));
  } finally {
    await service.close();
  }
});
