/**
 * A block device: a fixed-size array of bytes with positioned IO. Disks, the filters
 * stacked over them (as decorators) and replicas all speak this interface.
 */

/**
 * The bytes of a write: one buffer, or pieces that follow one another. The NBD server hands a
 * payload over in the pieces it arrived in (a 64 KiB write straddles two socket reads), so the
 * disk (one pwritev) and the journal each copy it once and nothing assembles it first.
 */
export type WriteData = Uint8Array | readonly Uint8Array[];

/** Bytes in `data`. */
export function writeDataBytes(data: WriteData): number {
  if (data instanceof Uint8Array) return data.byteLength;
  let bytes = 0;
  for (const piece of data) bytes += piece.byteLength;
  return bytes;
}

/** The pieces of `data` after its first `skip` bytes (views, no copy). */
export function writeDataAfter(data: WriteData, skip: number): Uint8Array[] {
  const rest: Uint8Array[] = [];
  for (const piece of data instanceof Uint8Array ? [data] : data) {
    if (skip >= piece.byteLength) skip -= piece.byteLength;
    else {
      rest.push(skip === 0 ? piece : piece.subarray(skip));
      skip = 0;
    }
  }
  return rest;
}

export interface WriteOptions {
  /** Force unit access: the write is durable before the promise resolves. */
  fua?: boolean;
  /**
   * Nobody changes the written data after the call (bytes received from the network, in
   * buffers of their own): a layer that keeps the bytes, like the journal, may keep `data`
   * itself instead of a copy.
   */
  immutable?: boolean;
  /**
   * Nothing else waits on the caller's thread meanwhile (the only request in flight, and no
   * other received yet): a device may do a durable write or flush whole on this thread, its
   * fdatasync included, instead of handing it to a worker thread and back, a round trip that
   * costs more than the write itself.
   */
  alone?: boolean;
}

/** What a flush may be told: see WriteOptions.alone. */
export type FlushOptions = Pick<WriteOptions, 'alone'>;

export interface BlockDevice {
  /** Size in bytes; fixed for the life of the device. */
  readonly sizeBytes: number;
  readonly readOnly: boolean;
  /** Fills `buf` with the bytes at `offset`. Reading past the end is an error. */
  read(buf: Uint8Array, offset: number): Promise<void>;
  /** Writes `data` at `offset`; the device reads `data` only until the promise settles. */
  write(data: WriteData, offset: number, options?: WriteOptions): Promise<void>;
  /** Makes `length` bytes at `offset` read as zeros. */
  writeZeroes(offset: number, length: number, options?: WriteOptions): Promise<void>;
  /**
   * Discards a range. ferry's devices guarantee a trimmed range reads as zeros afterwards,
   * so that replaying a trim is exact; a file deallocates it (a hole) where it can.
   */
  trim(offset: number, length: number, options?: WriteOptions): Promise<void>;
  /** Makes every completed write durable. */
  flush(options?: FlushOptions): Promise<void>;
  close(): Promise<void>;
}
