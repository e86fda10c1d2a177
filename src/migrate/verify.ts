/**
 * Verification of disks: two disks against each other, or a disk against a manifest, chunk
 * by chunk with SHA-256, reading sequentially in bounded memory.
 */
import { createHash } from 'node:crypto';
import { isAllZero, sha256Hex, throwIfAborted, type BlockDevice, ProgressMeter, everyMs, type Progress } from '../core/index.js';
import type { Manifest } from '../store/index.js';

const readBytes = 4 * 1024 * 1024;

export interface DiskComparison {
  identical: boolean;
  /** Byte offset of the first chunk that differs, when not identical. */
  firstDifferenceOffset?: number;
  /** SHA-256 of each whole disk (only when sizes match). */
  sha256?: [string, string];
  reason?: string;
}

export interface VerifyOptions {
  signal?: AbortSignal;
  onProgress?: (progress: Progress) => void;
}

/** Compares two disks byte for byte (through SHA-256 of each chunk and of the whole). */
export async function compareDisks(a: BlockDevice, b: BlockDevice, options: VerifyOptions = {}): Promise<DiskComparison> {
  if (a.sizeBytes !== b.sizeBytes) {
    return { identical: false, reason: `sizes differ: ${a.sizeBytes} and ${b.sizeBytes} bytes` };
  }
  const whole = [createHash('sha256'), createHash('sha256')] as const;
  const meter = new ProgressMeter(a.sizeBytes);
  const report = everyMs(250, options.onProgress);
  let firstDifferenceOffset: number | undefined;
  const bufA = Buffer.allocUnsafe(readBytes);
  const bufB = Buffer.allocUnsafe(readBytes);
  for (let offset = 0; offset < a.sizeBytes; offset += readBytes) {
    throwIfAborted(options.signal);
    const length = Math.min(readBytes, a.sizeBytes - offset);
    const [pa, pb] = [bufA.subarray(0, length), bufB.subarray(0, length)];
    await Promise.all([a.read(pa, offset), b.read(pb, offset)]);
    whole[0].update(pa);
    whole[1].update(pb);
    if (firstDifferenceOffset === undefined && !pa.equals(pb)) {
      let at = 0;
      while (pa[at] === pb[at]) at++;
      firstDifferenceOffset = offset + at;
    }
    meter.add(length);
    report(meter.snapshot());
  }
  report(meter.snapshot());
  const sha256: [string, string] = [whole[0].digest('hex'), whole[1].digest('hex')];
  return firstDifferenceOffset === undefined
    ? { identical: true, sha256 }
    : { identical: false, firstDifferenceOffset, sha256, reason: `first difference at byte ${firstDifferenceOffset}` };
}

/** Checks that a disk holds exactly what a manifest describes. */
export async function verifyDiskAgainstManifest(disk: BlockDevice, manifest: Manifest, options: VerifyOptions = {}): Promise<DiskComparison> {
  if (disk.sizeBytes !== manifest.disk.sizeBytes) {
    return { identical: false, reason: `disk is ${disk.sizeBytes} bytes, manifest says ${manifest.disk.sizeBytes}` };
  }
  const chunkSize = manifest.chunkSizeBytes;
  const hashes = new Map(manifest.chunks);
  const meter = new ProgressMeter(disk.sizeBytes);
  const report = everyMs(250, options.onProgress);
  const buf = Buffer.allocUnsafe(chunkSize);
  for (let index = 0, offset = 0; offset < disk.sizeBytes; index++, offset += chunkSize) {
    throwIfAborted(options.signal);
    const data = buf.subarray(0, Math.min(chunkSize, disk.sizeBytes - offset));
    await disk.read(data, offset);
    const expected = hashes.get(index);
    const matches = expected === undefined ? isAllZero(data) : sha256Hex(data) === expected;
    if (!matches) return { identical: false, firstDifferenceOffset: offset, reason: `chunk ${index} (at byte ${offset}) differs` };
    meter.add(data.byteLength);
    report(meter.snapshot());
  }
  return { identical: true };
}
