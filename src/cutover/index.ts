/** Cutover: of one disk (disk-cutover.ts) and of whole VMs (the coordinator), its plan, the hypervisor port and drivers. */
export { cutoverDisk, verifyWhole, type CutoverReplica, type CutoverSource, type FinalDrain, type DiskCutoverOptions, type DiskCutoverParts, type DiskCutoverResult } from './disk-cutover.js';
export { parsePlan, parseSideSpec, planVersion, defaultSchedule, type CutoverPlan, type VmPlan, type DiskPlan, type SideSpec, type QemuSide, type QemuLaunch, type HooksSide, type HealthSpec, type Runbook, type BootStep, type Schedule } from './plan.js';
export { CutoverRecords, cutoverStates, finalStates, isCommitted, type CutoverState, type CutoverRecord, type CutoverEvent, type VmRecord, type DiskRecord, type VmProgress } from './cutover-records.js';
export {
  Coordinator,
  report,
  type CoordinatedReplica,
  type CoordinatedSource,
  type CoordinatorOptions,
  type CutoverDiskPorts,
  type CutoverReport,
  type CutoverWiring,
  type BackpressureLevel,
  type ReplicaStatus,
  type SourceDiskStatus,
  type VmReport,
} from './coordinator.js';
export type { HealthCheck, VmDriver, VmRunState, VmStatus } from './vm-driver.js';
export * from './qemu/index.js';
export * from './drivers/index.js';
