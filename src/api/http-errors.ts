/**
 * The one place where error codes become HTTP statuses (and back, for clients). Every error
 * response is JSON: `{ "error": { "code": "bad-input", "message": "mode: expected ..." } }`.
 */
import { FerryError, asFerryError, errorCodes, type ErrorCode } from '../core/index.js';

export const httpStatusFor: Record<ErrorCode, number> = {
  'bad-input': 400,
  'not-found': 404,
  'invalid-state': 409,
  conflict: 409,
  unauthorized: 401,
  'unsupported-version': 422,
  'checksum-mismatch': 502,
  'store-unavailable': 503,
  aborted: 503,
  io: 500,
  internal: 500,
};

export interface ErrorBody {
  error: { code: ErrorCode; message: string };
}

/** The JSON body and status for any thrown value. */
export function errorResponse(err: unknown): { status: number; body: ErrorBody } {
  const error = asFerryError(err);
  return { status: httpStatusFor[error.code], body: { error: { code: error.code, message: error.message } } };
}

/** Rebuilds the FerryError a server sent; a body that is not ours maps by status. */
export function errorFromResponse(status: number, body: unknown, what: string): FerryError {
  const error = (body as Partial<ErrorBody> | undefined)?.error;
  if (error && typeof error.message === 'string' && (errorCodes as readonly string[]).includes(error.code)) {
    return new FerryError(error.code, error.message);
  }
  const code = (Object.entries(httpStatusFor).find(([, s]) => s === status)?.[0] as ErrorCode | undefined) ?? (status >= 500 ? 'internal' : 'bad-input');
  return new FerryError(code, `${what}: HTTP ${status}${typeof body === 'string' && body ? `: ${body.slice(0, 200)}` : ''}`);
}
