/** The one place where error codes become process exit codes. Documented in the README. */
import type { ErrorCode } from '../core/index.js';

export const exitCodes: Record<ErrorCode | 'ok' | 'different', number> = {
  ok: 0,
  /** `ferry verify` found the disks different. */
  different: 1,
  'bad-input': 2,
  'not-found': 3,
  'checksum-mismatch': 4,
  'unsupported-version': 5,
  'store-unavailable': 6,
  'invalid-state': 7,
  conflict: 8,
  io: 9,
  unauthorized: 10,
  internal: 70,
  aborted: 130,
};
