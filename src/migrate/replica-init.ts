/**
 * `replica init`: restores a base copy or seed into the replica and starts its applier,
 * which then follows the base's replication (src/delta/replica-applier.ts).
 */
import { ReplicaApplier, type ApplierLockOptions } from '../delta/index.js';
import type { Logger } from '../core/index.js';
import { restoreDisk, type RestoreOptions } from './restore.js';

export interface InitReplicaOptions extends Pick<RestoreOptions, 'repo' | 'manifestId' | 'concurrency' | 'signal' | 'onProgress'> {
  diskId: string;
  replicaPath: string;
  logger?: Logger;
  lock?: ApplierLockOptions;
}

export async function initReplica(options: InitReplicaOptions): Promise<ReplicaApplier> {
  const { concurrency, onProgress, ...rest } = options;
  return ReplicaApplier.create({
    ...rest,
    restoreBase: async (manifestId, destPath, signal) => {
      await restoreDisk({ repo: options.repo, manifestId, destPath, concurrency, onProgress, signal });
    },
  });
}
