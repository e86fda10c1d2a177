/**
 * A disk under live replication for tests: a random sparse source image, a file: store and
 * a DiskReplication over them, all under `base` (a path prefix in a temp directory).
 */
import { DiskReplication, type DiskReplicationOptions, type SourceReplication } from '../../src/migrate/index.js';
import { FileStore, Repository } from '../../src/store/index.js';
import { makeSparseImage } from './images.js';

const MiB = 1024 * 1024;

export interface TestReplicationOptions extends Partial<Omit<DiskReplicationOptions, 'repo' | 'sourcePath' | 'trackerDir'>> {
  sizeBytes: number;
  /** Seed of the source image's contents. */
  seed: number;
  dataFraction?: number;
  /** The store, when not a file: store of its own. */
  repo?: Repository;
}

export async function startTestReplication(base: string, options: TestReplicationOptions) {
  const { sizeBytes, seed, dataFraction, repo: given, ...rest } = options;
  const sourcePath = `${base}-source.img`;
  const storeDir = `${base}-store`;
  const replicaPath = `${base}-replica.img`;
  await makeSparseImage(sourcePath, sizeBytes, seed, dataFraction ?? 0.5);
  const repo = given ?? (await Repository.openOrInit(new FileStore(storeDir), MiB));
  const rep = await DiskReplication.start({
    diskId: 'disk0',
    replicaPath,
    applyPollMs: 10,
    ...rest,
    sourcePath,
    trackerDir: `${base}-tracker`,
    repo,
  });
  return { rep, repo, sourcePath, storeDir, replicaPath };
}

/**
 * Ships everything the source has written (quiesced meanwhile, as a cutover's drain is) and
 * resumes it; resolves with the seq a replica must reach to equal the source.
 */
export async function drainSource(rep: SourceReplication): Promise<number> {
  await rep.filter.quiesce();
  try {
    return (await rep.drainFinal()).finalSeq;
  } finally {
    rep.filter.resume();
  }
}
