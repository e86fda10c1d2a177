/**
 * Helpers for NBD integration tests: find the real client tools (failing loudly, naming the
 * tool, when one is missing), run them, and serve a FileDevice on a temp image with ferry's
 * NbdServer.
 */
import { execFile, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { access, constants, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { FileDevice, Logger } from '../../src/core/index.js';
import { NbdServer, type NbdServerOptions } from '../../src/nbd/index.js';

/** Debian package that ships each tool, for the failure message. */
const packages: Record<string, string> = {
  'qemu-io': 'qemu-utils',
  'qemu-img': 'qemu-utils',
  'qemu-nbd': 'qemu-utils',
  nbdcopy: 'libnbd-bin',
  nbdinfo: 'libnbd-bin',
  nbdsh: 'python3-libnbd',
  nbdkit: 'nbdkit',
  fio: 'fio',
};

/**
 * nbdsh runs `python3 -m nbd`; the module comes from Debian's python3-libnbd, so nbdsh must
 * find the system python first even when another python3 (pyenv, venv) leads PATH.
 */
export const nbdshEnv = { ...process.env, PATH: `/usr/bin${delimiter}${process.env.PATH ?? ''}` };

/** Throws, naming the tool and its package, if `name` is not on PATH. Tests must not skip. */
export async function requireTool(name: string): Promise<void> {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    try {
      await access(join(dir, name), constants.X_OK);
      if (name === 'nbdsh') await requireNbdshModule();
      return;
    } catch (err) {
      if ((err as Error).message.startsWith('required tool')) throw err;
    }
  }
  throw new Error(`required tool "${name}" not found on PATH (Debian package ${packages[name] ?? name}; scripts/setup-system installs the test peers)`);
}

async function requireNbdshModule(): Promise<void> {
  try {
    await run('nbdsh', ['-c', 'pass'], { env: nbdshEnv });
  } catch (err) {
    throw new Error(`required tool "nbdsh" cannot start (is Debian package python3-libnbd installed?): ${(err as Error).message}`);
  }
}

export interface RunResult {
  stdout: string;
  stderr: string;
  code: number;
}

/** Runs a command; rejects with its stderr if it exits non-zero (unless allowFailure). */
export function run(cmd: string, args: string[], options: { env?: NodeJS.ProcessEnv; allowFailure?: boolean; timeoutMs?: number } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { env: options.env ?? process.env, maxBuffer: 64 * 1024 * 1024, timeout: options.timeoutMs ?? 60_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      if (err && !options.allowFailure) {
        reject(new Error(`${cmd} ${args.join(' ')} failed (${code}): ${stderr || err.message}`));
        return;
      }
      resolve({ stdout, stderr, code });
    });
  });
}

/** Runs a Python snippet in nbdsh (`h` is a libnbd handle); returns its stdout. */
export async function nbdsh(script: string): Promise<string> {
  return (await run('nbdsh', ['-c', script], { env: nbdshEnv })).stdout;
}

export function sha256(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

export async function sha256File(path: string): Promise<string> {
  return sha256(await readFile(path));
}

export interface ServedImage {
  dir: string;
  imagePath: string;
  socketPath: string;
  /** nbd+unix URI of the export, for qemu tools and libnbd tools alike. */
  uri: string;
  server: NbdServer;
  device: FileDevice;
  /** Closes the server, then the device, then removes the temp dir. */
  stop(): Promise<void>;
}

/**
 * Creates a temp image (random contents unless `zero`), opens it as a FileDevice and serves it
 * as `disk0` on a unix socket.
 */
export async function serveImage(options: { sizeBytes: number; zero?: boolean; readOnly?: boolean; server?: Partial<NbdServerOptions>; name?: string } ): Promise<ServedImage> {
  const dir = await mkdtemp(join(tmpdir(), 'ferry-nbd-'));
  const imagePath = join(dir, 'disk.img');
  await writeFile(imagePath, options.zero ? Buffer.alloc(options.sizeBytes) : randomBytes(options.sizeBytes));
  const device = await FileDevice.open(imagePath, { readOnly: options.readOnly ?? false });
  const name = options.name ?? 'disk0';
  const server = new NbdServer({ exports: new Map([[name, device]]), logger: Logger.silent(), ...options.server });
  const socketPath = join(dir, 'nbd.sock');
  await server.listen({ path: socketPath });
  return {
    dir,
    imagePath,
    socketPath,
    uri: `nbd+unix:///${name}?socket=${socketPath}`,
    server,
    device,
    async stop() {
      await server.close();
      await device.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Starts a long-running tool; resolves when it exits, with its output. */
export function spawnTool(cmd: string, args: string[]): Promise<RunResult> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => resolve({ stdout, stderr, code: code ?? -1 }));
  });
}
