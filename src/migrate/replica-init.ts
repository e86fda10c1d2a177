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
  /** Called once the replica's lock is held, just before the restore begins. */
  onLocked?: () => void;
}

export async function initReplica(options: InitReplicaOptions): Promise<ReplicaApplier> {
  const { concurrency, onProgress, onLocked, ...rest } = options;
  return ReplicaApplier.create({
    ...rest,
    restoreBase: async (manifestId, destPath, signal) => {
      onLocked?.();
      await restoreDisk({ repo: options.repo, manifestId, destPath, concurrency, onProgress, signal });
    },
  });
}
