export { copyDisk, type CopyOptions, type CopyProgress, type CopyResult, type CopyStats } from './background-copy.js';
export { restoreDisk, type RestoreOptions, type RestoreProgress, type RestoreStats } from './restore.js';
export { compareDisks, hashDisk, verifyDiskAgainstManifest, type DiskComparison, type VerifyOptions } from './verify.js';
export { Throttle, type TrafficClass } from './throttle.js';
export { DeltaShipper, type DeltaShipperOptions, type ShipperStats } from './delta-shipper.js';
export { ReplicaApplier, type ApplierLockOptions, type ApplyResult, type FollowOptions, type ReplicaState } from './replica-applier.js';
export { fenceMessage, type FenceRecord } from './source-fence.js';
export { cutoverDisk, type CutoverReplica, type CutoverSource, type DiskCutoverOptions, type DiskCutoverParts, type DiskCutoverResult } from './disk-cutover.js';
export { DiskReplication, SourceReplication, type DiskReplicationOptions, type ReplicationFigures, type SourceReplicationOptions } from './disk-replication.js';
export {
  FilterService,
  claimSocketPath,
  defaultQuiesceLeaseMs,
  type BaseCopyStatus,
  type FilterDiskSpec,
  type FilterDiskStatus,
  type FilterServiceOptions,
  type QuiesceStatus,
  type SeedExportStatus,
} from './filter-service.js';
export { exportLiveSeed, parkForSeed, resumeAfterSeed, type LiveSeedOptions } from './seed-source.js';
