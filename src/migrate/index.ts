export { copyDisk, type CopyOptions, type CopyProgress, type CopyResult, type CopyStats } from './background-copy.js';
export { restoreDisk, type RestoreOptions, type RestoreProgress, type RestoreStats } from './restore.js';
export { compareDisks, verifyDiskAgainstManifest, type DiskComparison, type VerifyOptions } from './verify.js';
export { Throttle, type TrafficClass } from './throttle.js';
export { initReplica, type InitReplicaOptions } from './replica-init.js';
export { ReplicaService, replicaRegistryFile, replicaRegistryVersion, type ReplicaRunState, type ReplicaServiceOptions, type ReplicaSpec, type ReplicaStatus } from './replica-service.js';
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
// The migration service (`ferry serve`): its records, the rules of a migration, store checks.
export { SeedImportJob, type SeedImportStatus } from './seed-import-job.js';
export { AgentVmDriver, heldReplicaPort, sourceDiskPort, type AgentControl } from './agent-ports.js';
export * from './service/index.js';
