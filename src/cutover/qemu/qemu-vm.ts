/**
 * A small QEMU driver: launches `qemu-system-x86_64` with a direct kernel boot and one disk
 * served over NBD (ferry's filter), controls it over QMP, and keeps the serial console's
 * output for waiting on markers and for error messages.
 *
 * `pause()` is QMP `stop`, whose reply comes only after QEMU has drained the VM's in-flight
 * IO and flushed the disk: once it resolves, the disk sees no more writes from this VM.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, type WriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { FerryError, Logger } from '../../core/index.js';
import { QmpClient } from './qmp-client.js';

export interface QemuNbdDisk {
  /** Unix socket of the NBD server. */
  socketPath: string;
  /** Export name (default 'disk0'). */
  exportName?: string;
}

export interface QemuVmOptions {
  /** Directory for the QMP socket (must exist; keep its path short: unix socket paths are limited). */
  runDir: string;
  kernelPath: string;
  initrdPath?: string;
  /** Kernel command line. */
  append?: string;
  disk: QemuNbdDisk;
  /** Default 'qemu-system-x86_64'. */
  binary?: string;
  /** Default 'tcg' (works everywhere; 'kvm' where /dev/kvm is usable). */
  accel?: 'tcg' | 'kvm';
  memoryMiB?: number;
  cpus?: number;
  /** Also append the serial console to this file. */
  consoleLogPath?: string;
  /** Console bytes kept in memory (the newest; default 1 MiB). */
  consoleKeepBytes?: number;
  extraArgs?: string[];
  logger?: Logger;
}

export interface QemuExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface QemuStatus {
  running: boolean;
  status: string;
}

export class QemuVm {
  private child: ChildProcess | undefined;
  private qmpClient: QmpClient | undefined;
  private consoleText = '';
  private stderrText = '';
  private consoleFile: WriteStream | undefined;
  private exitValue: QemuExit | undefined;
  private exitPromise: Promise<QemuExit> | undefined;
  private readonly consoleListeners = new Set<() => void>();
  private readonly logger: Logger;

  constructor(readonly options: QemuVmOptions) {
    this.logger = options.logger ?? Logger.silent();
  }

  get qmpSocketPath(): string {
    return join(this.options.runDir, 'qmp.sock');
  }

  /** The command line QEMU is launched with. */
  get args(): string[] {
    const o = this.options;
    const disk = o.disk;
    const blockdev = [
      'driver=nbd',
      'server.type=unix',
      `server.path=${commaEscape(disk.socketPath)}`,
      `export=${commaEscape(disk.exportName ?? 'disk0')}`,
      'node-name=disk0',
    ].join(',');
    return [
      '-machine', `pc,accel=${o.accel ?? 'tcg'}`,
      '-m', String(o.memoryMiB ?? 256),
      '-smp', String(o.cpus ?? 1),
      '-nodefaults',
      '-no-user-config',
      '-display', 'none',
      '-no-reboot',
      '-chardev', 'stdio,id=console,signal=off',
      '-serial', 'chardev:console',
      '-qmp', `unix:${commaEscape(this.qmpSocketPath)},server=on,wait=off`,
      '-kernel', o.kernelPath,
      ...(o.initrdPath ? ['-initrd', o.initrdPath] : []),
      ...(o.append ? ['-append', o.append] : []),
      '-blockdev', blockdev,
      '-device', 'virtio-blk-pci,drive=disk0',
      ...(o.extraArgs ?? []),
    ];
  }

  /** The serial console's output so far (the newest `consoleKeepBytes`). */
  get console(): string {
    return this.consoleText;
  }

  /** QEMU's own messages on stderr. */
  get stderr(): string {
    return this.stderrText;
  }

  get qmp(): QmpClient {
    if (!this.qmpClient) throw new FerryError('invalid-state', 'QEMU: not started');
    return this.qmpClient;
  }

  get exited(): QemuExit | undefined {
    return this.exitValue;
  }

  /** Launches QEMU and connects to its QMP socket. The VM runs from the start. */
  async start(options: { timeoutMs?: number } = {}): Promise<void> {
    if (this.child) throw new FerryError('invalid-state', 'QEMU: already started');
    const binary = this.options.binary ?? 'qemu-system-x86_64';
    await rm(this.qmpSocketPath, { force: true });
    if (this.options.consoleLogPath) this.consoleFile = createWriteStream(this.options.consoleLogPath, { flags: 'a' });
    const child = spawn(binary, this.args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    const died = new AbortController();
    this.exitPromise = new Promise((resolve) => {
      child.once('error', (err) => {
        this.stderrText += `${binary}: ${err.message}\n`;
        this.exitValue = { code: null, signal: null };
        died.abort();
        this.notifyConsole();
        resolve(this.exitValue);
      });
      child.once('close', (code, signal) => {
        this.exitValue ??= { code, signal };
        died.abort();
        this.consoleFile?.end();
        this.notifyConsole();
        resolve(this.exitValue);
      });
    });
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (text: string) => this.onConsole(text));
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (text: string) => {
      this.stderrText = keepTail(this.stderrText + text, 64 * 1024);
    });
    this.logger.debug('QEMU started', { pid: child.pid, args: this.args.join(' ') });
    try {
      this.qmpClient = await QmpClient.connect(this.qmpSocketPath, { retryForMs: options.timeoutMs ?? 30_000, signal: died.signal });
    } catch (err) {
      await this.kill();
      throw new FerryError('io', `QEMU did not start: ${(err as Error).message}${this.diagnostics()}`, { cause: err });
    }
  }

  /**
   * Resolves with the first match of `pattern` in the console output (from the start of
   * the output); rejects, quoting the console's tail, on timeout or if QEMU exits first.
   */
  waitForConsole(pattern: RegExp, timeoutMs: number): Promise<RegExpMatchArray> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const match = this.consoleText.match(pattern);
        if (match) {
          done();
          resolve(match);
        } else if (this.exitValue) {
          done();
          reject(new FerryError('invalid-state', `QEMU exited (${describeExit(this.exitValue)}) before its console showed ${pattern}${this.diagnostics()}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new FerryError('io', `QEMU: the console did not show ${pattern} within ${timeoutMs} ms${this.diagnostics()}`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this.consoleListeners.delete(check);
      };
      this.consoleListeners.add(check);
      check();
    });
  }

  /** Pauses the VM (QMP `stop`): resolves once in-flight IO is drained and the disk flushed. */
  async pause(options: { timeoutMs?: number } = {}): Promise<void> {
    await this.qmp.execute('stop', undefined, { timeoutMs: options.timeoutMs ?? 60_000 });
  }

  /** Resumes a paused VM (QMP `cont`). */
  async resume(): Promise<void> {
    await this.qmp.execute('cont');
  }

  async status(): Promise<QemuStatus> {
    return this.qmp.execute<QemuStatus>('query-status');
  }

  /**
   * Asks QEMU to quit (QMP `quit`) and waits for the process to exit; kills it if it has
   * not exited within `timeoutMs` (default 10 s). QEMU flushes its disks on the way out:
   * a disk that holds IO (a quiesced filter) keeps it from exiting until it is killed.
   */
  async quit(options: { timeoutMs?: number } = {}): Promise<QemuExit> {
    if (!this.child || !this.exitPromise) throw new FerryError('invalid-state', 'QEMU: not started');
    if (this.exitValue) return this.exitValue;
    const timeoutMs = options.timeoutMs ?? 10_000;
    // The reply may never come when QEMU exits first: the exit is what counts.
    this.qmpClient?.execute('quit', undefined, { timeoutMs }).catch(() => undefined);
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), timeoutMs)));
    const result = await Promise.race([this.exitPromise, timedOut]);
    clearTimeout(timer);
    if (result === 'timeout') {
      this.logger.warn('QEMU did not quit in time, killing it', { timeoutMs });
      return this.kill();
    }
    await this.qmpClient?.close();
    return result;
  }

  /** Kills QEMU (SIGKILL) and waits for it to exit. */
  async kill(): Promise<QemuExit> {
    if (!this.child || !this.exitPromise) throw new FerryError('invalid-state', 'QEMU: not started');
    if (!this.exitValue) this.child.kill('SIGKILL');
    const exit = await this.exitPromise;
    await this.qmpClient?.close();
    return exit;
  }

  /** The console's and stderr's tails, for error messages. */
  diagnostics(): string {
    const consoleTail = keepTail(this.consoleText, 3000).trimEnd();
    const stderrTail = keepTail(this.stderrText, 2000).trimEnd();
    return `\n--- console (tail) ---\n${consoleTail || '(nothing)'}\n--- qemu stderr ---\n${stderrTail || '(nothing)'}`;
  }

  private onConsole(text: string): void {
    this.consoleText = keepTail(this.consoleText + text, this.options.consoleKeepBytes ?? 1024 * 1024);
    this.consoleFile?.write(text);
    this.notifyConsole();
  }

  private notifyConsole(): void {
    for (const listener of [...this.consoleListeners]) listener();
  }
}

/** QEMU option values escape a comma by doubling it. */
function commaEscape(value: string): string {
  return value.replaceAll(',', ',,');
}

function keepTail(text: string, maxLength: number): string {
  return text.length > maxLength ? text.slice(text.length - maxLength) : text;
}

function describeExit(exit: QemuExit): string {
  return exit.signal ? `signal ${exit.signal}` : `code ${exit.code}`;
}
