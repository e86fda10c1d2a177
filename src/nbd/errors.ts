/**
 * The one place where failures become NBD error values. A device may throw a FerryError (the
 * usual case) or, from deep inside Node, a plain errno error; both map onto the protocol's
 * small closed set so a client never sees a host-specific number.
 */
import { FerryError, type ErrorCode } from '../core/index.js';
import {
  NBD_EINVAL,
  NBD_EIO,
  NBD_ENOMEM,
  NBD_ENOSPC,
  NBD_EOVERFLOW,
  NBD_EPERM,
  NBD_ESHUTDOWN,
} from './protocol.js';

const byFerryCode: Record<ErrorCode, number> = {
  'bad-input': NBD_EINVAL,
  'not-found': NBD_EIO,
  'checksum-mismatch': NBD_EIO,
  'unsupported-version': NBD_EIO,
  'store-unavailable': NBD_EIO,
  // A write to a read-only disk, or a device that refuses IO in its current state.
  'invalid-state': NBD_EPERM,
  'conflict': NBD_EPERM,
  'unauthorized': NBD_EPERM,
  'io': NBD_EIO,
  // The device (or the server) is being shut down under the request.
  'aborted': NBD_ESHUTDOWN,
  'internal': NBD_EIO,
};

/** Node errno codes worth telling apart; everything else is EIO. The spec asks EDQUOT/EFBIG → ENOSPC. */
const bySystemCode: Record<string, number> = {
  ENOSPC: NBD_ENOSPC,
  EDQUOT: NBD_ENOSPC,
  EFBIG: NBD_ENOSPC,
  EPERM: NBD_EPERM,
  EACCES: NBD_EPERM,
  EROFS: NBD_EPERM,
  ENOMEM: NBD_ENOMEM,
  EINVAL: NBD_EINVAL,
  EOVERFLOW: NBD_EOVERFLOW,
  EBADF: NBD_ESHUTDOWN,
};

/** The NBD error value to send for a failure thrown by a device. */
export function nbdErrorFor(err: unknown): number {
  if (err instanceof FerryError) {
    // An IO failure caused by a full disk is still ENOSPC to the client.
    if (err.code === 'io') {
      const cause = systemCode(err.cause);
      if (cause !== undefined && bySystemCode[cause] === NBD_ENOSPC) return NBD_ENOSPC;
    }
    return byFerryCode[err.code];
  }
  const code = systemCode(err);
  return (code !== undefined ? bySystemCode[code] : undefined) ?? NBD_EIO;
}

const names: Record<number, string> = {
  [NBD_EPERM]: 'EPERM',
  [NBD_EIO]: 'EIO',
  [NBD_ENOMEM]: 'ENOMEM',
  [NBD_EINVAL]: 'EINVAL',
  [NBD_ENOSPC]: 'ENOSPC',
  [NBD_EOVERFLOW]: 'EOVERFLOW',
  [NBD_ESHUTDOWN]: 'ESHUTDOWN',
};

export function nbdErrorName(error: number): string {
  return names[error] ?? `error ${error}`;
}

function systemCode(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' ? code : undefined;
}
