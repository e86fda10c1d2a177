/**
 * The durable fence of a source disk after its cutover (invariant 7): `fence.json` in the
 * disk's tracker directory. While it exists the filter refuses the disk's IO, also after a
 * restart, so the source never runs beside the destination. Only an operator's deliberate
 * release removes it (failback, or a cutover that must be undone by hand).
 */
import { readFile, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { FerryError, fsyncDirectory, writeFileAtomic } from '../core/index.js';

export const fenceVersion = 1;

export interface FenceRecord {
  version: typeof fenceVersion;
  disk: string;
  /** The replication that was cut over. */
  replication: string;
  /** Every record below it is in the replica. */
  finalSeq: number;
  /** When the source was fenced, ISO 8601 UTC. */
  at: string;
  /** The cutover that fenced it. */
  owner: string;
}

export function fencePath(trackerDir: string): string {
  return join(trackerDir, 'fence.json');
}

export async function readFence(trackerDir: string): Promise<FenceRecord | undefined> {
  const path = fencePath(trackerDir);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new FerryError('io', `cannot read the fence ${path}: ${(err as Error).message}`, { cause: err });
  }
  let record: Partial<FenceRecord>;
  try {
    record = JSON.parse(text) as Partial<FenceRecord>;
  } catch (err) {
    // A damaged fence still fences: refusing IO is the safe reading.
    throw new FerryError('checksum-mismatch', `fence ${path} is damaged; the disk stays fenced until it is repaired or released`, { cause: err });
  }
  if (record.version !== fenceVersion) throw new FerryError('unsupported-version', `fence ${path} has version ${JSON.stringify(record.version)}; this ferry reads ${fenceVersion}`);
  return record as FenceRecord;
}

export async function writeFence(trackerDir: string, record: FenceRecord): Promise<void> {
  await writeFileAtomic(fencePath(trackerDir), `${JSON.stringify(record, null, 2)}\n`);
}

export async function removeFence(trackerDir: string): Promise<void> {
  const path = fencePath(trackerDir);
  await unlink(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOENT') throw err;
  });
  await fsyncDirectory(dirname(path));
}

/** What a fenced disk answers: why, and how an operator releases it. */
export function fenceMessage(record: FenceRecord): string {
  return (
    `disk ${record.disk} was cut over at ${record.at} (replication ${record.replication}, final seq ${record.finalSeq}) and is fenced: ` +
    `its IO is refused so that it never runs beside the destination. To run it here again on purpose (failback), ` +
    `release it: ferry fence release --control SOCKET --disk ${record.disk}`
  );
}
