/**
 * Randomized concurrent writers over NBD, as a VM's would be: seeded workloads confined to
 * two regions of the disk (16-40 MiB and 160-184 MiB, as a VM's files are), three writers each.
 */
import type { BlockDevice } from '../../src/core/index.js';
import { NbdTestClient, nbdDevice } from './nbd-client.js';
import { RandomWorkload } from './random-workload.js';

const MiB = 1024 * 1024;

/** `length` bytes of `device` from `offset`: a workload confined to a region, as a VM's files are. */
function region(device: BlockDevice, offset: number, length: number): BlockDevice {
  return {
    sizeBytes: length,
    readOnly: false,
    read: (buf, at) => device.read(buf, offset + at),
    write: (data, at, options) => device.write(data, offset + at, options),
    writeZeroes: (at, n, options) => device.writeZeroes(offset + at, n, options),
    trim: (at, n, options) => device.trim(offset + at, n, options),
    flush: () => device.flush(),
    close: async () => {},
  };
}

/** Writers in two regions of the disk, each with its own seeded workload. */
export async function writeConcurrently(socketPath: string, workloadSeed: number, opsPerWriter: number, onComplete?: () => void): Promise<void> {
  const client = await NbdTestClient.connect({ path: socketPath, exportName: 'd0' });
  const disk = nbdDevice(client);
  const regions = [region(disk, 16 * MiB, 24 * MiB), region(disk, 160 * MiB, 24 * MiB)];
  try {
    await Promise.all(
      regions.map((r, i) => new RandomWorkload({ seed: workloadSeed + i, sizeBytes: r.sizeBytes, writers: 3, opsPerWriter, maxIoBytes: 256 * 1024 }).run(r, { onComplete })),
    );
    await disk.flush();
  } finally {
    await disk.close().catch(() => {});
  }
}
