/**
 * A block device: a fixed-size array of bytes with positioned IO. Disks, the filters
 * stacked over them (as decorators) and replicas all speak this interface.
 */

export interface WriteOptions {
  /** Force unit access: the write is durable before the promise resolves. */
  fua?: boolean;
}

export interface BlockDevice {
  /** Size in bytes; fixed for the life of the device. */
  readonly sizeBytes: number;
  readonly readOnly: boolean;
  /** Fills `buf` with the bytes at `offset`. Reading past the end is an error. */
  read(buf: Uint8Array, offset: number): Promise<void>;
  write(data: Uint8Array, offset: number, options?: WriteOptions): Promise<void>;
  /** Makes `length` bytes at `offset` read as zeros. */
  writeZeroes(offset: number, length: number, options?: WriteOptions): Promise<void>;
  /**
   * Discards a range. ferry's devices guarantee a trimmed range reads as zeros afterwards,
   * so that replaying a trim is exact.
   */
  trim(offset: number, length: number, options?: WriteOptions): Promise<void>;
  /** Makes every completed write durable. */
  flush(): Promise<void>;
  close(): Promise<void>;
}
