// The migration service's state and rules (`ferry serve`): its records in the state
// database, the checks a migration's settings must pass, a store's connectivity check.
export {
  ServiceRecords,
  finalMigrationStates,
  hostRoles,
  migrationStates,
  nameExpected,
  namePattern,
  tokenHash,
  tokenPrefix,
  weekdays,
  type HostInput,
  type HostInventory,
  type HostRecord,
  type HostRole,
  type MigrationDisk,
  type MigrationDiskProgress,
  type MigrationEvent,
  type MigrationInput,
  type MigrationRecord,
  type MigrationSettings,
  type MigrationState,
  type MigrationVm,
  type RateWindow,
  type StoreCheck,
  type StoreInput,
  type StoreRecord,
  type ThrottleSettings,
  type TokenRecord,
  type Weekday,
} from './records.js';
export { IssuesError, formatIssuePath, inventoryIssues, referenceIssues, rateWindowIssues, renderIssues, settingsIssues, type Issue, type RenderedIssue } from './rules.js';
export { checkStore, defaultStoreCheckTimeoutMs } from './store-check.js';
export { Steering, rateAt, type DiskProgress, type MigrationProgress, type SteeringOptions } from './steering.js';
