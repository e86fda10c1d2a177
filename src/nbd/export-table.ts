/**
 * The exports a server offers: names mapped to block devices, with what the handshake tells
 * clients about each (size, flags, block sizes). Every connection to one name gets the same
 * device object, which is what makes NBD_FLAG_CAN_MULTI_CONN true: there is no per-connection
 * cache, so a write completed on one connection is visible on all, and FLUSH flushes the disk.
 */
import { badInput, type BlockDevice } from '../core/index.js';
import {
  NBD_FLAG_CAN_MULTI_CONN,
  NBD_FLAG_HAS_FLAGS,
  NBD_FLAG_READ_ONLY,
  NBD_FLAG_SEND_DF,
  NBD_FLAG_SEND_FLUSH,
  NBD_FLAG_SEND_FUA,
  NBD_FLAG_SEND_TRIM,
  NBD_FLAG_SEND_WRITE_ZEROES,
} from './protocol.js';

/** The largest READ or WRITE payload ferry accepts (and advertises as maximum block size). */
export const maxPayloadBytes = 32 * 1024 * 1024;
/** The spec bounds export names (and all strings) at 4096 bytes. */
export const maxNameBytes = 4096;

export interface NbdExportOptions {
  device: BlockDevice;
  /** Shown by NBD_OPT_LIST and NBD_INFO_DESCRIPTION. */
  description?: string;
  /**
   * Minimum block size to advertise: a power of two from 1 to 64 KiB. Requests not aligned to
   * it are refused with EINVAL. Default 1: ferry's devices take any byte range.
   */
  minBlockBytes?: number;
  /** Preferred block size to advertise; a power of two, at least 512. Default 4096. */
  preferredBlockBytes?: number;
  /**
   * Why the export turns clients away right now (a disk fenced after its cutover), asked at
   * every handshake; undefined while it serves. The client is told the message.
   */
  refusal?: () => string | undefined;
}

/** What the server is given per name: a device, or a device with options. */
export type NbdExportSpec = BlockDevice | NbdExportOptions;

export interface NbdExport {
  readonly name: string;
  readonly device: BlockDevice;
  readonly description: string | undefined;
  readonly sizeBytes: number;
  readonly readOnly: boolean;
  readonly minBlockBytes: number;
  readonly preferredBlockBytes: number;
  readonly maxBlockBytes: number;
  readonly refusal: () => string | undefined;
}

export class ExportTable {
  private readonly byName = new Map<string, NbdExport>();
  private readonly defaultName: string | undefined;

  /**
   * `defaultName` is what an empty export name (the protocol's "default export") means; with
   * a single export and no default given, that export is the default.
   */
  constructor(specs: ReadonlyMap<string, NbdExportSpec>, defaultName?: string) {
    for (const [name, spec] of specs) this.byName.set(name, makeExport(name, spec));
    if (defaultName !== undefined && !this.byName.has(defaultName)) {
      throw badInput('defaultExport', defaultName, `one of the export names (${[...this.byName.keys()].join(', ')})`);
    }
    this.defaultName = defaultName ?? (this.byName.size === 1 ? [...this.byName.keys()][0] : undefined);
  }

  /** The export for a name as a client sent it; '' is the default export. */
  lookup(name: string): NbdExport | undefined {
    const exact = this.byName.get(name);
    if (exact !== undefined) return exact;
    return name === '' && this.defaultName !== undefined ? this.byName.get(this.defaultName) : undefined;
  }

  list(): NbdExport[] {
    return [...this.byName.values()];
  }
}

/** Transmission flags for an export; SEND_DF only once structured replies are negotiated. */
export function transmissionFlags(exp: NbdExport, structuredReplies: boolean): number {
  // Even read-only exports take FLUSH (a no-op) so clients that always flush keep working.
  let flags = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_CAN_MULTI_CONN;
  if (exp.readOnly) flags |= NBD_FLAG_READ_ONLY;
  else flags |= NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES;
  // ferry always answers a READ with a single data chunk, so "don't fragment" is free.
  if (structuredReplies) flags |= NBD_FLAG_SEND_DF;
  return flags;
}

function makeExport(name: string, spec: NbdExportSpec): NbdExport {
  const options: NbdExportOptions = 'device' in spec ? spec : { device: spec };
  if (Buffer.byteLength(name, 'utf8') > maxNameBytes || name.includes('\0')) {
    throw badInput('export name', name, `at most ${maxNameBytes} bytes of UTF-8 without NUL`);
  }
  const { device } = options;
  if (!Number.isSafeInteger(device.sizeBytes) || device.sizeBytes < 0) {
    throw badInput(`export ${name}: device size`, device.sizeBytes, 'a whole number of bytes');
  }
  const minBlockBytes = options.minBlockBytes ?? 1;
  if (!isPowerOfTwo(minBlockBytes) || minBlockBytes > 65536) {
    throw badInput(`export ${name}: minBlockBytes`, minBlockBytes, 'a power of two from 1 to 65536');
  }
  const preferredBlockBytes = options.preferredBlockBytes ?? Math.max(4096, minBlockBytes);
  if (!isPowerOfTwo(preferredBlockBytes) || preferredBlockBytes < Math.max(512, minBlockBytes) || preferredBlockBytes > maxPayloadBytes) {
    throw badInput(`export ${name}: preferredBlockBytes`, preferredBlockBytes, `a power of two from ${Math.max(512, minBlockBytes)} to ${maxPayloadBytes}`);
  }
  return {
    name,
    device,
    description: options.description,
    sizeBytes: device.sizeBytes,
    readOnly: device.readOnly,
    minBlockBytes,
    preferredBlockBytes,
    maxBlockBytes: maxPayloadBytes,
    refusal: options.refusal ?? (() => undefined),
  };
}

function isPowerOfTwo(n: number): boolean {
  return Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0;
}
