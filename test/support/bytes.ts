import type { WriteData } from '../../src/core/index.js';

/** A write's data as one Buffer: journal extents may give it in pieces. */
export function joined(data: WriteData): Buffer {
  return Buffer.concat(data instanceof Uint8Array ? [data] : data);
}
