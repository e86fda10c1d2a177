/**
 * The NBD error values a client sees for a device's failures. The numbers are the NBD
 * protocol's (doc/proto.md, "Error values"), not the host's errno, so they are written out
 * here rather than taken from src/nbd/protocol.ts.
 */
import { describe, expect, it } from 'vitest';
import { FerryError, errorCodes, type ErrorCode } from '../../src/core/index.js';
import { nbdErrorFor, nbdErrorName } from '../../src/nbd/errors.js';
import * as protocol from '../../src/nbd/protocol.js';

const EPERM = 1;
const EIO = 5;
const ENOMEM = 12;
const EINVAL = 22;
const ENOSPC = 28;
const EOVERFLOW = 75;
const ESHUTDOWN = 108;

/** An error as Node's fs and net modules throw them. */
function errno(code: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: something failed`), { code, errno: -1, syscall: 'write' });
}

describe('NBD error values', () => {
  it('protocol.ts holds the protocol numbers', () => {
    expect({
      EPERM: protocol.NBD_EPERM,
      EIO: protocol.NBD_EIO,
      ENOMEM: protocol.NBD_ENOMEM,
      EINVAL: protocol.NBD_EINVAL,
      ENOSPC: protocol.NBD_ENOSPC,
      EOVERFLOW: protocol.NBD_EOVERFLOW,
      ENOTSUP: protocol.NBD_ENOTSUP,
      ESHUTDOWN: protocol.NBD_ESHUTDOWN,
    }).toEqual({ EPERM, EIO, ENOMEM, EINVAL, ENOSPC, EOVERFLOW, ENOTSUP: 95, ESHUTDOWN });
  });

  it('maps every FerryError code', () => {
    const expected: Record<ErrorCode, number> = {
      'bad-input': EINVAL,
      'not-found': EIO,
      'checksum-mismatch': EIO,
      'unsupported-version': EIO,
      'store-unavailable': EIO,
      'invalid-state': EPERM, // e.g. a write to a read-only disk
      'conflict': EPERM,
      'unauthorized': EPERM,
      'io': EIO,
      'aborted': ESHUTDOWN, // the server is going away under the request
      'internal': EIO,
    };
    expect(Object.keys(expected).sort()).toEqual([...errorCodes].sort());
    for (const code of errorCodes) expect(nbdErrorFor(new FerryError(code, 'x')), code).toBe(expected[code]);
  });

  it('reports an IO failure caused by a full disk as ENOSPC, other IO failures as EIO', () => {
    for (const code of ['ENOSPC', 'EDQUOT', 'EFBIG']) {
      expect(nbdErrorFor(new FerryError('io', 'write failed', { cause: errno(code) })), code).toBe(ENOSPC);
    }
    expect(nbdErrorFor(new FerryError('io', 'write failed', { cause: errno('EIO') }))).toBe(EIO);
    expect(nbdErrorFor(new FerryError('io', 'write failed', { cause: 'ENOSPC' }))).toBe(EIO);
    // Only an 'io' failure looks at its cause.
    expect(nbdErrorFor(new FerryError('bad-input', 'x', { cause: errno('ENOSPC') }))).toBe(EINVAL);
  });

  it('maps Node errno errors onto the protocol set, anything else to EIO', () => {
    const expected: Record<string, number> = {
      ENOSPC,
      EDQUOT: ENOSPC,
      EFBIG: ENOSPC,
      EPERM,
      EACCES: EPERM,
      EROFS: EPERM,
      ENOMEM,
      EINVAL,
      EOVERFLOW,
      EBADF: ESHUTDOWN, // the device's file was closed under the request
      EIO,
      ENOENT: EIO,
      ECONNRESET: EIO,
      EAGAIN: EIO,
    };
    for (const [code, value] of Object.entries(expected)) expect(nbdErrorFor(errno(code)), code).toBe(value);
  });

  it('answers EIO for things that are not errors', () => {
    for (const value of [undefined, null, 'ENOSPC', 28, { code: 28 }, {}, new Error('plain')]) {
      expect(nbdErrorFor(value), String(value)).toBe(EIO);
    }
  });

  it('names the error values for logs, and shows unknown ones as numbers', () => {
    expect([EPERM, EIO, ENOMEM, EINVAL, ENOSPC, EOVERFLOW, ESHUTDOWN].map(nbdErrorName)).toEqual([
      'EPERM',
      'EIO',
      'ENOMEM',
      'EINVAL',
      'ENOSPC',
      'EOVERFLOW',
      'ESHUTDOWN',
    ]);
    expect(nbdErrorName(0)).toBe('error 0');
    expect(nbdErrorName(4242)).toBe('error 4242');
  });
});
