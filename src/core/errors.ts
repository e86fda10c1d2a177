/**
 * ferry's one error type. Every failure an operator can see carries one code from a closed
 * set; each edge (CLI exit codes, HTTP statuses, NBD errors) maps codes in exactly one place.
 */

export const errorCodes = [
  /** The caller gave us something wrong: a flag, a size, a request field. */
  'bad-input',
  /** A named object, disk, manifest or migration does not exist. */
  'not-found',
  /** Data read back does not match its checksum or content address. */
  'checksum-mismatch',
  /** A format version this build does not understand. */
  'unsupported-version',
  /** The store (directory, S3 endpoint) could not be reached or refused the request. */
  'store-unavailable',
  /** The operation is not allowed in the current state. */
  'invalid-state',
  /** Something already exists and we refuse to overwrite it. */
  'conflict',
  /**
   * Credentials were refused: a missing or wrong bearer token, or a server whose certificate
   * is not the one pinned.
   */
  'unauthorized',
  /** A disk or file IO failed. */
  'io',
  /** The operation was cancelled through its AbortSignal. */
  'aborted',
  /** A bug: an assertion inside ferry failed. */
  'internal',
] as const;

export type ErrorCode = (typeof errorCodes)[number];

export class FerryError extends Error {
  override readonly name = 'FerryError';
  /** The same request may well succeed if tried again (a 5xx, a reset connection, a timeout). */
  readonly transient: boolean;
  constructor(
    readonly code: ErrorCode,
    message: string,
    options?: { cause?: unknown; transient?: boolean },
  ) {
    super(message, options);
    this.transient = options?.transient ?? false;
  }
}

export function isFerryError(err: unknown, code?: ErrorCode): err is FerryError {
  return err instanceof FerryError && (code === undefined || err.code === code);
}

/** Bad input that names the field and shows what was received. */
export function badInput(field: string, received: unknown, expected: string): FerryError {
  return new FerryError('bad-input', `${field}: expected ${expected}, received ${describe(received)}`);
}

/** Throws an 'aborted' error if the signal has fired. */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new FerryError('aborted', 'operation aborted', { cause: signal.reason });
}

/** Wraps any thrown value into a FerryError, keeping FerryErrors as they are. */
export function asFerryError(err: unknown, code: ErrorCode = 'internal'): FerryError {
  if (err instanceof FerryError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new FerryError(code, `${message}${fullFileSystemHint(err)}`, { cause: err });
}

/** What to tell the operator when a file system is full (ENOSPC, EDQUOT); '' for other errors. */
export function fullFileSystemHint(err: unknown): string {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT' ? ' (the file system is full: free space on it)' : '';
}

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (value === undefined) return 'nothing';
  try {
    const text = JSON.stringify(value);
    return text.length > 80 ? `${text.slice(0, 77)}...` : text;
  } catch {
    return String(value);
  }
}
