/**
 * ferry's tiny test guest (scripts/build-test-guest): find or build it, fail loudly naming
 * the missing tool or package, make its kernel command line, and check the pattern it
 * writes on a disk image.
 *
 * The pattern: generation g (1, 2, ...) rewrites blocks [first, first + blocks) of 4 KiB of
 * each disk in turn (vda by default), in block order, one O_DIRECT write each, flushes, and
 * once every disk has it prints "FERRY-GUEST: wrote gen <g>". Block i of generation g is 64
 * lines of 64 bytes: "ferry-guest block <i> gen <g>" padded with spaces to 63 bytes, and "\n".
 * With `verify`, the guest first checks the pattern its disks hold and resumes from there;
 * scripts/build-test-guest's header lists its console markers.
 */
import { execFile } from 'node:child_process';
import { access, constants, open, readdir } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const guestBlockBytes = 4096;
const lineBytes = 64;

const repoRoot = fileURLToPath(new URL('../..', import.meta.url));

export interface TestGuest {
  qemuBinary: string;
  kernelPath: string;
  initrdPath: string;
}

export interface GuestPatternOptions {
  /** Blocks in the region (default 256). */
  blocks?: number;
  /** First block of the region (default 0). */
  first?: number;
  /** Keep writing generations until the VM stops (default true). */
  loop?: boolean;
  /** With loop, stop after this generation (default: never). */
  gens?: number;
  /** Seconds between generations (default 0.2). */
  sleepSeconds?: number;
  /** The disks to write, in order (default ['vda']). */
  disks?: string[];
  /**
   * First check the pattern on every disk ("verify OK" / "verify FAILED" lines), then go on
   * writing from the generation it found (default false: start at generation 1).
   */
  verify?: boolean;
}

/**
 * Finds qemu-system-x86_64 and the Debian cloud kernel, failing with the package to install,
 * then builds the guest (or finds it up to date) in `.cache/test-guest`.
 */
export async function testGuest(cacheDir = join(repoRoot, '.cache', 'test-guest')): Promise<TestGuest> {
  const qemuBinary = await findOnPath('qemu-system-x86_64', 'qemu-system-x86');
  await findOnPath('cpio', 'cpio');
  const kernels = (await readdir('/boot').catch(() => [] as string[])).filter((f) => /^vmlinuz-.*-cloud-amd64$/.test(f));
  if (kernels.length === 0) {
    throw new Error('the test guest needs a Debian cloud kernel (/boot/vmlinuz-*-cloud-amd64): install Debian package linux-image-cloud-amd64 (scripts/setup-system does)');
  }
  try {
    await access('/bin/busybox', constants.X_OK);
  } catch {
    throw new Error('the test guest needs /bin/busybox: install Debian package busybox-static (scripts/setup-system does)');
  }
  const script = join(repoRoot, 'scripts', 'build-test-guest');
  await new Promise<void>((resolve, reject) => {
    execFile(script, [cacheDir], { timeout: 120_000 }, (err, _stdout, stderr) => {
      if (err) reject(new Error(`scripts/build-test-guest failed: ${stderr.trim() || err.message}`));
      else resolve();
    });
  });
  return { qemuBinary, kernelPath: join(cacheDir, 'vmlinuz'), initrdPath: join(cacheDir, 'initramfs.cpio.gz') };
}

/** The kernel command line for the guest: serial console, quiet, and the pattern's settings. */
export function guestAppend(options: GuestPatternOptions = {}): string {
  const parts = ['console=ttyS0', 'quiet', 'panic=-1'];
  parts.push(`ferry.blocks=${options.blocks ?? 256}`, `ferry.first=${options.first ?? 0}`, `ferry.loop=${options.loop === false ? 0 : 1}`);
  if (options.gens !== undefined) parts.push(`ferry.gens=${options.gens}`);
  if (options.sleepSeconds !== undefined) parts.push(`ferry.sleep=${options.sleepSeconds}`);
  if (options.disks !== undefined) parts.push(`ferry.disks=${options.disks.join(',')}`);
  if (options.verify) parts.push('ferry.verify=1');
  return parts.join(' ');
}

/** What the guest's verify (`verify: true`) said of one disk. */
export interface GuestVerifyReport {
  disk: string;
  ok: boolean;
  /** OK: the newest generation on the disk; `blocks` of the region hold it, the rest gen - 1. */
  gen?: number;
  blocks?: number;
  /** FAILED: the first block that differs from the state the writer would have left. */
  block?: number;
  /** The whole console line. */
  line: string;
}

/** The guest's per-disk verify reports, in console order. */
export function guestVerifyReports(console: string): GuestVerifyReport[] {
  return [...console.matchAll(/^FERRY-GUEST: verify (OK|FAILED) disk=(\S+)(.*)$/gm)].map((m) => {
    const [line, verdict, disk, rest] = [m[0].trimEnd(), m[1]!, m[2]!, m[3]!];
    const field = (name: string) => {
      const value = new RegExp(`\\b${name}=(\\d+)`).exec(rest)?.[1];
      return value === undefined ? undefined : Number(value);
    };
    return verdict === 'OK' ? { disk, ok: true, gen: field('gen'), blocks: field('blocks'), line } : { disk, ok: false, block: field('block'), line };
  });
}

/** The generation the guest resumed writing with after a successful verify ("verify done next=<g>"). */
export function guestResumedGeneration(console: string): number | undefined {
  const match = /FERRY-GUEST: verify done next=(\d+)/.exec(console);
  return match ? Number(match[1]) : undefined;
}

/** The generations the guest reported as complete (written and flushed), in console order. */
export function reportedGenerations(console: string): number[] {
  return [...console.matchAll(/FERRY-GUEST: wrote gen (\d+)/g)].map((m) => Number(m[1]));
}

/** The bytes the guest writes to block `block` in generation `gen`. */
export function guestBlock(block: number, gen: number): Buffer {
  const line = `ferry-guest block ${block} gen ${gen}`.padEnd(lineBytes - 1, ' ') + '\n';
  return Buffer.from(line.repeat(guestBlockBytes / lineBytes), 'latin1');
}

export interface GuestPatternCheck {
  /** The generation found in each block of the region (0: never written, all zero). */
  generations: number[];
  minGen: number;
  maxGen: number;
  /** Blocks still all zero. */
  unwritten: number;
  /**
   * The write order holds: the region is blocks at generation maxGen followed by blocks at
   * maxGen - 1 (or all at maxGen), as the guest's in-order writes leave it at any moment.
   */
  ordered: boolean;
  /** Blocks that are not a complete record of any generation, and order violations. */
  errors: string[];
}

/** Reads the guest's region from a disk image and checks every block. */
export async function checkGuestPattern(imagePath: string, options: Pick<GuestPatternOptions, 'blocks' | 'first'> = {}): Promise<GuestPatternCheck> {
  const blocks = options.blocks ?? 256;
  const first = options.first ?? 0;
  const region = Buffer.alloc(blocks * guestBlockBytes);
  const file = await open(imagePath, 'r');
  try {
    const { bytesRead } = await file.read(region, 0, region.length, first * guestBlockBytes);
    if (bytesRead !== region.length) throw new Error(`${imagePath}: only ${bytesRead} of ${region.length} bytes in the pattern region`);
  } finally {
    await file.close();
  }
  return checkGuestRegion(region, { blocks, first });
}

export function checkGuestRegion(region: Buffer, options: Pick<GuestPatternOptions, 'blocks' | 'first'> = {}): GuestPatternCheck {
  const blocks = options.blocks ?? region.length / guestBlockBytes;
  const first = options.first ?? 0;
  const errors: string[] = [];
  const generations: number[] = [];
  let unwritten = 0;
  for (let n = 0; n < blocks; n++) {
    const block = first + n;
    const data = region.subarray(n * guestBlockBytes, (n + 1) * guestBlockBytes);
    if (data.every((b) => b === 0)) {
      generations.push(0);
      unwritten++;
      continue;
    }
    const head = data.subarray(0, lineBytes).toString('latin1');
    const match = /^ferry-guest block (\d+) gen (\d+) *\n$/.exec(head);
    if (!match) {
      generations.push(-1);
      errors.push(`block ${block}: not a record: ${JSON.stringify(head.slice(0, 40))}`);
      continue;
    }
    const [foundBlock, gen] = [Number(match[1]), Number(match[2])];
    generations.push(gen);
    if (foundBlock !== block) errors.push(`block ${block}: holds the record of block ${foundBlock} (gen ${gen})`);
    else if (!data.equals(guestBlock(block, gen))) errors.push(`block ${block}: a torn or damaged record of gen ${gen}`);
  }
  const valid = generations.filter((g) => g >= 0);
  const maxGen = valid.length > 0 ? Math.max(...valid) : 0;
  const minGen = valid.length > 0 ? Math.min(...valid) : 0;
  // In order: a prefix at maxGen, then the rest at maxGen - 1 (0 = unwritten for gen 1).
  let ordered = errors.length === 0;
  let seenOlder = false;
  for (let n = 0; n < generations.length && ordered; n++) {
    const gen = generations[n]!;
    if (gen === maxGen && !seenOlder) continue;
    if (gen === maxGen - 1) {
      seenOlder = true;
      continue;
    }
    ordered = false;
    errors.push(`block ${first + n}: gen ${gen} breaks the write order (expected gen ${seenOlder ? maxGen - 1 : `${maxGen} or ${maxGen - 1}`})`);
  }
  return { generations, minGen, maxGen, unwritten, ordered, errors };
}

async function findOnPath(name: string, debianPackage: string): Promise<string> {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    const path = join(dir, name);
    try {
      await access(path, constants.X_OK);
      return path;
    } catch {
      // next
    }
  }
  throw new Error(`required tool "${name}" not found on PATH: install Debian package ${debianPackage} (scripts/setup-system installs the test peers)`);
}
