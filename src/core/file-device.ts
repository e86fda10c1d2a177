/**
 * A BlockDevice over a raw image file or a host block device, with positioned IO.
 *
 * The data path (read, write, fdatasync) uses the callback `fs` functions on the handle's raw
 * fd, each wrapped in one small promise: FileHandle's promise API costs several allocations
 * and promise hops per call (its result object, its request wrapper), which at tens of
 * thousands of IOPS is a large share of the server's CPU. Opening, stat and close still go
 * through the FileHandle, which owns the fd. Small reads and writes run inline on the event
 * loop while the storage answers fast (see inline-io.ts): a threadpool hop costs more CPU than
 * a pread/pwrite the page cache serves.
 */
import { open, readFile, stat, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { constants, fdatasync, fdatasyncSync, read as fsRead, readSync } from 'node:fs';
import { writeDataBytes, type BlockDevice, type FlushOptions, type WriteData, type WriteOptions } from './block-device.js';
import { zeros } from './bytes.js';
import { FerryError, badInput } from './errors.js';
import { InlineIo, type InlineIoOptions } from './inline-io.js';
import { punchHole } from './punch-hole.js';
import { writeFullyCallback, writeFullySync } from './positioned-write.js';

export const sectorBytes = 512;
const zeroWriteBytes = 1024 * 1024;

export interface OpenFileDeviceOptions {
  readOnly?: boolean;
  /** Create a sparse file of this size if `path` does not exist. */
  createSizeBytes?: number;
  /** If set, the device must have exactly this size. */
  expectSizeBytes?: number;
  /** When small IO runs inline and when on the threadpool (see InlineIo). */
  inlineIo?: InlineIoOptions;
}

export class FileDevice implements BlockDevice {
  private closed = false;
  /** The handle's fd while open; -1 after close, so late IO fails with EBADF, never hits a reused fd. */
  private fd: number;
  private readonly inlineIo: InlineIo;
  /**
   * Whether an fdatasync asked for alone (WriteOptions.alone) may run inline now: a policy of
   * its own, since syncs are slow where writes are not (a disk with a slow cache flush).
   */
  private readonly inlineSync = new InlineIo();
  /** Whether punching holes worked here so far (a filesystem that cannot, we stop asking). */
  private canPunch = true;

  private constructor(
    readonly path: string,
    private readonly handle: FileHandle,
    readonly sizeBytes: number,
    readonly readOnly: boolean,
    inlineIo: InlineIoOptions | undefined,
  ) {
    this.fd = handle.fd;
    this.inlineIo = new InlineIo(inlineIo);
  }

  static async open(path: string, options: OpenFileDeviceOptions = {}): Promise<FileDevice> {
    const readOnly = options.readOnly ?? false;
    let handle: FileHandle;
    try {
      handle = await open(path, readOnly ? constants.O_RDONLY : constants.O_RDWR);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' && options.createSizeBytes !== undefined && !readOnly) {
        checkSize(options.createSizeBytes, 'size');
        handle = await open(path, constants.O_RDWR | constants.O_CREAT | constants.O_EXCL, 0o600).catch((createErr: NodeJS.ErrnoException) => {
          const why = createErr.code === 'ENOENT' ? `its directory ${dirname(path)} does not exist` : createErr.message;
          throw new FerryError(createErr.code === 'ENOENT' ? 'not-found' : 'io', `cannot create disk ${path}: ${why}`, { cause: createErr });
        });
        await handle.truncate(options.createSizeBytes);
      } else if (code === 'ENOENT') {
        throw new FerryError('not-found', `disk ${path} does not exist`, { cause: err });
      } else {
        throw new FerryError('io', `cannot open disk ${path}: ${(err as Error).message}`, { cause: err });
      }
    }
    try {
      const sizeBytes = await deviceSize(path, handle);
      checkSize(sizeBytes, `size of ${path}`);
      if (options.expectSizeBytes !== undefined && sizeBytes !== options.expectSizeBytes) {
        throw new FerryError(
          'bad-input',
          `disk ${path} is ${sizeBytes} bytes, expected exactly ${options.expectSizeBytes} bytes`,
        );
      }
      return new FileDevice(path, handle, sizeBytes, readOnly, options.inlineIo);
    } catch (err) {
      await handle.close();
      throw err;
    }
  }

  read(buf: Uint8Array, offset: number): Promise<void> {
    try {
      this.checkRange(offset, buf.byteLength);
    } catch (err) {
      return Promise.reject(err);
    }
    const total = buf.byteLength;
    const fd = this.fd;
    if (fd < 0) return Promise.reject(closedError('read'));
    if (total === 0) return Promise.resolve();
    try {
      if (this.inlineIo.tryInline(total, () => this.readInline(fd, buf, offset))) return Promise.resolve();
    } catch (err) {
      return Promise.reject(err as Error);
    }
    return new Promise<void>((resolve, reject) => {
      let done = 0;
      // Short reads are continued where they stopped; end of file inside the disk is an error.
      const step = (err: NodeJS.ErrnoException | null, bytesRead: number): void => {
        if (err !== null) return reject(err);
        if (bytesRead === 0) return reject(new FerryError('io', `${this.path}: unexpected end of disk at ${offset + done}`));
        done += bytesRead;
        if (done < total) fsRead(fd, buf, done, total - done, offset + done, step);
        else resolve();
      };
      fsRead(fd, buf, 0, total, offset, step);
    });
  }

  write(data: WriteData, offset: number, options?: WriteOptions): Promise<void> {
    const total = writeDataBytes(data);
    try {
      this.checkWritable();
      this.checkRange(offset, total);
    } catch (err) {
      return Promise.reject(err);
    }
    const fua = options?.fua === true;
    const fd = this.fd;
    if (fd < 0) return Promise.reject(closedError('write'));
    try {
      // A durable write goes inline only when alone; its fdatasync then follows (datasync).
      if (total > 0 && (!fua || options.alone === true) && this.inlineIo.tryInline(total, () => writeInline(fd, data, offset))) {
        return fua ? this.datasync(options) : Promise.resolve();
      }
    } catch (err) {
      return Promise.reject(err as Error);
    }
    return new Promise<void>((resolve, reject) => {
      const synced = (err: NodeJS.ErrnoException | null): void => (err !== null ? reject(err) : resolve());
      // FUA adds an fdatasync once all is written.
      writeFullyCallback(fd, data, offset, (err) => (err !== null ? reject(err) : fua ? fdatasync(fd, synced) : resolve()));
    });
  }

  async writeZeroes(offset: number, length: number, options?: WriteOptions): Promise<void> {
    this.checkWritable();
    this.checkRange(offset, length);
    for (let at = offset; at < offset + length; at += zeroWriteBytes) {
      await this.write(zeros(Math.min(zeroWriteBytes, offset + length - at)), at);
    }
    if (options?.fua) await this.datasync(options);
  }

  /**
   * Deallocates the range (a hole: it reads as zeros, as promised, and takes no space); where
   * holes cannot be punched, writes zeros instead.
   */
  async trim(offset: number, length: number, options?: WriteOptions): Promise<void> {
    this.checkWritable();
    this.checkRange(offset, length);
    if (length === 0) return;
    if (this.canPunch && (await punchHole(this.path, offset, length))) {
      if (options?.fua) await this.datasync(options);
      return;
    }
    this.canPunch = false; // not here: no use asking again for every trim
    await this.writeZeroes(offset, length, options);
  }

  flush(options?: FlushOptions): Promise<void> {
    return this.readOnly ? Promise.resolve() : this.datasync(options);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.fd = -1;
    await this.handle.close();
  }

  private datasync(options?: FlushOptions): Promise<void> {
    const fd = this.fd;
    if (fd < 0) return Promise.reject(closedError('fdatasync'));
    try {
      if (options?.alone === true && this.inlineSync.tryInline(0, () => (fdatasyncSync(fd), true))) return Promise.resolve();
    } catch (err) {
      return Promise.reject(err as Error);
    }
    return new Promise<void>((resolve, reject) => fdatasync(fd, (err) => (err !== null ? reject(err) : resolve())));
  }

  private readInline(fd: number, buf: Uint8Array, offset: number): true {
    for (let done = 0; done < buf.byteLength; ) {
      const bytesRead = readSync(fd, buf, done, buf.byteLength - done, offset + done);
      if (bytesRead === 0) throw new FerryError('io', `${this.path}: unexpected end of disk at ${offset + done}`);
      done += bytesRead;
    }
    return true;
  }

  private checkWritable(): void {
    if (this.readOnly) throw new FerryError('invalid-state', `disk ${this.path} is open read-only`);
  }

  private checkRange(offset: number, length: number): void {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.sizeBytes) {
      throw new FerryError('bad-input', `${this.path}: range ${offset}+${length} is outside the disk (${this.sizeBytes} bytes)`);
    }
  }
}

function writeInline(fd: number, data: WriteData, offset: number): true {
  writeFullySync(fd, data, offset);
  return true;
}

/** What FileHandle gave for IO after close: an errno-style EBADF (the NBD server maps it to ESHUTDOWN). */
function closedError(syscall: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${syscall}: file closed`), { code: 'EBADF', syscall });
}

function checkSize(sizeBytes: number, field: string): void {
  if (!Number.isSafeInteger(sizeBytes) || sizeBytes <= 0 || sizeBytes % sectorBytes !== 0) {
    throw badInput(field, sizeBytes, `a positive multiple of ${sectorBytes} bytes`);
  }
}

/** Regular files report their size in stat; block devices through sysfs. */
async function deviceSize(path: string, handle: FileHandle): Promise<number> {
  const info = await handle.stat();
  if (info.isFile()) return info.size;
  if (info.isBlockDevice()) {
    const major = Number((BigInt(info.rdev) >> 8n) & 0xfffn);
    const minor = Number((BigInt(info.rdev) & 0xffn) | ((BigInt(info.rdev) >> 12n) & 0xfff00n));
    const sectors = await readFile(`/sys/dev/block/${major}:${minor}/size`, 'utf8');
    return Number(sectors.trim()) * sectorBytes;
  }
  throw new FerryError('bad-input', `${path} is neither a regular file nor a block device`);
}

/** True if the path exists (any kind of file). */
export async function pathExists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

/** Makes a directory's entries durable: a new or renamed file survives power loss only once its directory is synced. */
export async function fsyncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
