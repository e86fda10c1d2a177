// The public face of src/delta: the filter stack, the change tracker and the NBD server.
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
export * from './nbd/index.js';
