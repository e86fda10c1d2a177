// The public face of src/delta: capture (filter, change tracker, journal), the delta codec,
// the shipper that stores deltas and the applier that replays them onto a replica.
export { ActivityLog, defaultActivityExtentBytes, readActivityLog } from './activity-log.js';
export { DirtyBitmap, defaultBlockSizeBytes, type Extent } from './dirty-bitmap.js';
export {
  Journal,
  SealedSegment,
  defaultJournalHardLimitBytes,
  defaultSegmentMaxAgeMs,
  defaultSegmentMaxBytes,
  type JournalOptions,
  type JournalRecord,
  type RecordKind,
  type SealedExtent,
} from './journal.js';
export {
  ChangeTracker,
  type ChangeTrackerOptions,
  type ChangeTrackerState,
  type ModeChange,
  type TrackingMode,
} from './change-tracker.js';
export { CaptureFilter, type CaptureFilterOptions } from './capture-filter.js';
export { Backpressure, type BackpressureSettings } from './backpressure.js';
export { decodeDelta, deltaKey, deltaVersion, encodeDelta, parseDeltaKey, type Delta, type DeltaExtent, type DeltaHeader, type DeltaKind, type DeltaName } from './delta-codec.js';
export { deleteDelta, getDelta, listDeltas, putDelta } from './delta-objects.js';
export { DeltaShipper, type DeltaShipperOptions, type LinkBudget, type ShipperStats } from './delta-shipper.js';
export { ReplicaApplier, type ApplierLockOptions, type ApplyResult, type FollowOptions, type ReplicaState } from './replica-applier.js';
export { fenceMessage, readFence, removeFence, writeFence, type FenceRecord } from './source-fence.js';
