/**
 * A small QEMU driver: launches `qemu-system-x86_64` with a direct kernel boot and its disks
 * (served over NBD by ferry's filter, or raw files), controls it over QMP, and keeps the
 * serial console's output for waiting on markers and for error messages.
 *
 * Two ways to launch. Attached (the default): QEMU is this process's child, its console on
 * a pipe. Detached: QEMU outlives this process (a coordinator may be killed and restarted
 * while the VM runs); everything lives in the run directory: `qmp.sock`, `qemu.pid`,
 * `console.log` (the serial console, written by QEMU) and `qemu.log` (QEMU's own messages).
 * `QemuVm.attach()` finds such a VM again, or one the operator started, by its QMP socket.
 *
 * `pause()` is QMP `stop`, whose reply comes only after QEMU has drained the VM's in-flight
 * IO and flushed the disk: once it resolves, the disk sees no more writes from this VM.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, createWriteStream, fstatSync, openSync, readSync, type WriteStream } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { FerryError, isFerryError, Logger } from '../../core/index.js';
import { QmpClient } from './qmp-client.js';

export interface QemuNbdDisk {
  /** Unix socket of the NBD server. */
  socketPath: string;
  /** Export name (default 'disk0'). */
  exportName?: string;
}

export interface QemuFileDisk {
  /** A raw image file (e.g. a replica). QEMU locks it: a second QEMU cannot open it for writing. */
  file: string;
}

export type QemuDisk = QemuNbdDisk | QemuFileDisk;

export interface QemuVmOptions {
  /** Directory for the QMP socket and, detached, the other files (must exist; keep its path short: unix socket paths are limited). */
  runDir: string;
  kernelPath: string;
  initrdPath?: string;
  /** Kernel command line. */
  append?: string;
  /** The disks, as virtio-blk devices in this order: vda, vdb, ... */
  disks?: QemuDisk[];
  /** One disk over NBD: the same as `disks: [disk]`. */
  disk?: QemuNbdDisk;
  /** Default 'qemu-system-x86_64'. */
  binary?: string;
  /** Default 'tcg' (works everywhere; 'kvm' where /dev/kvm is usable). */
  accel?: 'tcg' | 'kvm';
  memoryMiB?: number;
  cpus?: number;
  /** Run QEMU detached from this process (see the top of this file). */
  detached?: boolean;
  /** Also append the serial console to this file. Not with `detached`: its console is `<runDir>/console.log`. */
  consoleLogPath?: string;
  /** Console bytes kept in memory or read from the console file (the newest; default 1 MiB). */
  consoleKeepBytes?: number;
  extraArgs?: string[];
  logger?: Logger;
}

/** Where to find a running VM. */
export interface QemuAttachOptions {
  /** A detached VM's run directory: its qmp.sock, qemu.pid, console.log and qemu.log. */
  runDir?: string;
  /**
   * Or a VM someone else started: its QMP socket. Give ferry a monitor of its own
   * (`-qmp unix:<path>,server=on,wait=off`): a QMP monitor serves one client at a time.
   */
  qmpSocketPath?: string;
  /** Its pidfile (`-pidfile`): tells a hung QEMU from a gone one, and lets `quit` kill it. */
  pidFilePath?: string;
  /** Its serial console's file, for `console` and `waitForConsole`. */
  consolePath?: string;
  /** How long QMP may take to answer while the VM's process lives (it may be starting; default 10 s). */
  timeoutMs?: number;
  logger?: Logger;
}

export interface QemuExit {
  /** Exit code and signal; both null for a VM this process did not launch (it cannot know). */
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface QemuStatus {
  running: boolean;
  /** QMP's RunState: 'running', 'paused', 'prelaunch', 'suspended', 'io-error', ... */
  status: string;
}

/** The files of a VM: the QMP socket always, the others where known. */
export interface QemuPaths {
  qmpSocketPath: string;
  pidFilePath?: string;
  consolePath?: string;
  /** QEMU's stderr (detached). */
  logPath?: string;
}

const defaultKeepBytes = 1024 * 1024;
/** How often an exit or a console file is looked at: cheap checks, and a cutover waits on them. */
const pollMs = 10;

export class QemuVm {
  private readonly launch: QemuVmOptions | undefined;
  private readonly paths: QemuPaths;
  private child: ChildProcess | undefined;
  private pidValue: number | undefined;
  private qmpClient: QmpClient | undefined;
  private disconnected = false;
  private consoleText = '';
  private stderrText = '';
  private consoleFile: WriteStream | undefined;
  private exitValue: QemuExit | undefined;
  private exitPromise: Promise<QemuExit> | undefined;
  private readonly consoleListeners = new Set<() => void>();
  private readonly logger: Logger;

  /** A VM to launch with `start()`. */
  constructor(options: QemuVmOptions);
  /** A handle on a VM that runs already: use `QemuVm.attach()`. */
  constructor(options: undefined, paths: QemuPaths, logger?: Logger);
  constructor(options: QemuVmOptions | undefined, paths?: QemuPaths, logger?: Logger) {
    this.launch = options;
    if (options) {
      if (options.detached && options.consoleLogPath) {
        throw new FerryError('bad-input', 'QEMU: a detached VM writes its console to <runDir>/console.log; consoleLogPath is for attached ones');
      }
      const dir = resolve(options.runDir);
      this.paths = options.detached ? runDirPaths(dir) : { qmpSocketPath: join(dir, 'qmp.sock') };
    } else {
      if (!paths) throw new FerryError('internal', 'QemuVm: neither launch options nor paths');
      this.paths = paths;
    }
    this.logger = options?.logger ?? logger ?? Logger.silent();
  }

  /**
   * Connects to a running VM. Rejects with a 'not-found' FerryError when none runs there:
   * nothing answers on the QMP socket and the pidfile (if any) names no live QEMU, so a
   * stale socket or pidfile of a QEMU gone means "not running". A QEMU whose process lives
   * but whose QMP does not answer in time (hung, or another client holds the monitor) is
   * an 'io' error: it may well run.
   */
  static async attach(options: QemuAttachOptions): Promise<QemuVm> {
    let paths: QemuPaths;
    if (options.runDir !== undefined) paths = runDirPaths(resolve(options.runDir));
    else if (options.qmpSocketPath !== undefined) paths = { qmpSocketPath: options.qmpSocketPath, pidFilePath: options.pidFilePath, consolePath: options.consolePath };
    else throw new FerryError('bad-input', 'QemuVm.attach: give runDir or qmpSocketPath');
    const timeoutMs = options.timeoutMs ?? 10_000;

    const pid = paths.pidFilePath ? await readPidFile(paths.pidFilePath) : undefined;
    const alive = pid !== undefined && (await processAlive(pid, paths.pidFilePath));
    // While the process lives, wait for its QMP (it may be starting); stop if it dies.
    const died = new AbortController();
    const watcher = alive ? setInterval(() => void processAlive(pid, paths.pidFilePath).then((yes) => yes || died.abort()), 200) : undefined;
    let client: QmpClient;
    try {
      client = await QmpClient.connect(paths.qmpSocketPath, { retryForMs: alive ? timeoutMs : 0, handshakeTimeoutMs: timeoutMs, signal: died.signal });
    } catch (err) {
      const noListener = isFerryError(err, 'not-found') || isFerryError(err, 'aborted');
      if (noListener && (!alive || died.signal.aborted)) {
        const pidNote = paths.pidFilePath ? (pid === undefined ? `, no pid in ${paths.pidFilePath}` : `, pid ${pid} is not running`) : '';
        throw new FerryError('not-found', `QEMU: no VM runs at ${paths.qmpSocketPath} (nothing answers${pidNote})`, { cause: err });
      }
      throw new FerryError('io', `QEMU${pid === undefined ? '' : ` pid ${pid}`}: its QMP ${paths.qmpSocketPath} does not answer: ${(err as Error).message}`, { cause: err });
    } finally {
      clearInterval(watcher);
    }
    const vm = new QemuVm(undefined, paths, options.logger);
    vm.qmpClient = client;
    vm.pidValue = alive ? pid : undefined;
    return vm;
  }

  get qmpSocketPath(): string {
    return this.paths.qmpSocketPath;
  }

  /** Where QEMU writes its pid (detached or attached with a pidfile). */
  get pidFilePath(): string | undefined {
    return this.paths.pidFilePath;
  }

  /** The serial console's file (detached, or attached with a console file). */
  get consolePath(): string | undefined {
    return this.paths.consolePath ?? this.launch?.consoleLogPath;
  }

  /** QEMU's process id, where known. */
  get pid(): number | undefined {
    return this.pidValue;
  }

  /** The command line QEMU is launched with. */
  get args(): string[] {
    const o = this.launch;
    if (!o) throw new FerryError('invalid-state', 'QEMU: an attached VM has no launch command line');
    const disks: QemuDisk[] = o.disks ?? (o.disk ? [o.disk] : []);
    const console = o.detached
      ? ['-chardev', `file,id=console,path=${commaEscape(this.paths.consolePath!)}`, '-pidfile', this.paths.pidFilePath!]
      : ['-chardev', 'stdio,id=console,signal=off'];
    return [
      '-machine', `pc,accel=${o.accel ?? 'tcg'}`,
      '-m', String(o.memoryMiB ?? 256),
      '-smp', String(o.cpus ?? 1),
      '-nodefaults',
      '-no-user-config',
      '-display', 'none',
      '-no-reboot',
      ...console,
      '-serial', 'chardev:console',
      '-qmp', `unix:${commaEscape(this.qmpSocketPath)},server=on,wait=off`,
      '-kernel', o.kernelPath,
      ...(o.initrdPath ? ['-initrd', o.initrdPath] : []),
      ...(o.append ? ['-append', o.append] : []),
      ...disks.flatMap((disk, i) => ['-blockdev', blockdevArg(disk, `disk${i}`), '-device', `virtio-blk-pci,drive=disk${i}`]),
      ...(o.extraArgs ?? []),
    ];
  }

  /** The serial console's output so far (the newest `consoleKeepBytes`). */
  get console(): string {
    if (this.child?.stdout) return this.consoleText;
    const path = this.consolePath;
    return path ? readTail(path, this.launch?.consoleKeepBytes ?? defaultKeepBytes) : '';
  }

  /** QEMU's own messages on stderr. */
  get stderr(): string {
    return this.paths.logPath ? readTail(this.paths.logPath, 64 * 1024) : this.stderrText;
  }

  get qmp(): QmpClient {
    if (!this.qmpClient || this.disconnected) throw new FerryError('invalid-state', this.disconnected ? 'QEMU: disconnected' : 'QEMU: not started');
    return this.qmpClient;
  }

  /** How QEMU exited, once this handle saw it exit. */
  get exited(): QemuExit | undefined {
    return this.exitValue;
  }

  /** Launches QEMU and connects to its QMP socket. The VM runs from the start. */
  async start(options: { timeoutMs?: number } = {}): Promise<void> {
    const launch = this.launch;
    if (!launch) throw new FerryError('invalid-state', 'QEMU: an attached VM cannot be started');
    if (this.child) throw new FerryError('invalid-state', 'QEMU: already started');
    const binary = launch.binary ?? 'qemu-system-x86_64';
    const args = this.args;
    await rm(this.qmpSocketPath, { force: true });
    let child: ChildProcess;
    if (launch.detached) {
      // The console file is QEMU's from its first byte: nothing of a former run counts.
      await rm(this.paths.consolePath!, { force: true });
      const log = openSync(this.paths.logPath!, 'w', 0o600);
      try {
        child = spawn(binary, args, { detached: true, stdio: ['ignore', log, log] });
      } finally {
        closeSync(log);
      }
      child.unref();
    } else {
      if (launch.consoleLogPath) this.consoleFile = createWriteStream(launch.consoleLogPath, { flags: 'a', mode: 0o600 });
      child = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
      child.stdout!.setEncoding('utf8');
      child.stdout!.on('data', (text: string) => this.onConsole(text));
      child.stderr!.setEncoding('utf8');
      child.stderr!.on('data', (text: string) => {
        this.stderrText = keepTail(this.stderrText + text, 64 * 1024);
      });
    }
    this.child = child;
    this.pidValue = child.pid;
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
    this.logger.debug('QEMU started', { pid: child.pid, detached: launch.detached === true, args: args.join(' ') });
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
    const fromPipe = this.child?.stdout !== undefined && this.child.stdout !== null;
    if (!fromPipe && !this.consolePath) return Promise.reject(new FerryError('invalid-state', 'QEMU: no console to watch (attach with a console file)'));
    return new Promise((resolve, reject) => {
      let checking = false;
      const check = async () => {
        if (checking) return;
        checking = true;
        try {
          const match = this.console.match(pattern);
          if (match) {
            done();
            resolve(match);
          } else if (this.exitValue || (!fromPipe && !(await this.isAlive()))) {
            done();
            const how = this.exitValue ? ` (${describeExit(this.exitValue)})` : '';
            reject(new FerryError('invalid-state', `QEMU exited${how} before its console showed ${pattern}${this.diagnostics()}`));
          }
        } finally {
          checking = false;
        }
      };
      const listener = () => void check();
      // A console file is read again every few ms; a pipe tells when it has more.
      const poll = fromPipe ? undefined : setInterval(listener, pollMs * 10);
      const timer = setTimeout(() => {
        done();
        reject(new FerryError('io', `QEMU: the console did not show ${pattern} within ${timeoutMs} ms${this.diagnostics()}`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        clearInterval(poll);
        this.consoleListeners.delete(listener);
      };
      this.consoleListeners.add(listener);
      listener();
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
    if (this.exitValue) return this.exitValue;
    if (!this.qmpClient && this.pidValue === undefined) throw new FerryError('invalid-state', 'QEMU: not started');
    const timeoutMs = options.timeoutMs ?? 10_000;
    // The reply may never come when QEMU exits first: the exit is what counts.
    if (this.qmpClient && !this.disconnected) this.qmpClient.execute('quit', undefined, { timeoutMs }).catch(() => undefined);
    const result = await this.exitWithin(timeoutMs);
    if (result === 'timeout') {
      this.logger.warn('QEMU did not quit in time, killing it', { timeoutMs });
      return this.kill();
    }
    await this.qmpClient?.close();
    return result;
  }

  /** Kills QEMU (SIGKILL) and waits for it to exit. */
  async kill(): Promise<QemuExit> {
    if (this.exitValue) return this.exitValue;
    if (this.child) {
      this.child.kill('SIGKILL');
    } else if (this.pidValue !== undefined) {
      // Only the QEMU of this pidfile: a pid reused by another process is not touched.
      if (await processAlive(this.pidValue, this.paths.pidFilePath)) {
        try {
          process.kill(this.pidValue, 'SIGKILL');
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw new FerryError('io', `QEMU pid ${this.pidValue}: cannot kill: ${(err as Error).message}`, { cause: err });
        }
      }
    } else {
      throw new FerryError('invalid-state', `QEMU at ${this.qmpSocketPath}: cannot kill it, its pid is unknown (give its pidfile)`);
    }
    const exit = await this.exitWithin(30_000);
    await this.qmpClient?.close();
    if (exit === 'timeout') throw new FerryError('io', `QEMU pid ${this.pidValue}: still running 30 s after SIGKILL`);
    return exit;
  }

  /** Closes the QMP connection and leaves QEMU running (e.g. for another client to attach). */
  async disconnect(): Promise<void> {
    this.disconnected = true;
    await this.qmpClient?.close();
  }

  /** The console's and stderr's tails, for error messages. */
  diagnostics(): string {
    const consoleTail = keepTail(this.console, 3000).trimEnd();
    const stderrTail = keepTail(this.stderr, 2000).trimEnd();
    return `\n--- console (tail) ---\n${consoleTail || '(nothing)'}\n--- qemu stderr ---\n${stderrTail || '(nothing)'}`;
  }

  /** Whether QEMU still runs, as far as this handle can tell. */
  private async isAlive(): Promise<boolean> {
    if (this.exitValue) return false;
    if (this.child) return true;
    if (this.pidValue !== undefined) return processAlive(this.pidValue, this.paths.pidFilePath);
    // Without a pid: QEMU closes its QMP connection when it exits.
    return this.qmpClient !== undefined && (this.disconnected || !this.qmpClient.closed);
  }

  /** Resolves with the exit once QEMU has exited, or 'timeout'. */
  private async exitWithin(timeoutMs: number): Promise<QemuExit | 'timeout'> {
    if (this.exitPromise) {
      let timer: NodeJS.Timeout | undefined;
      const timedOut = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), timeoutMs)));
      const result = await Promise.race([this.exitPromise, timedOut]);
      clearTimeout(timer);
      return result;
    }
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (!(await this.isAlive())) return (this.exitValue ??= { code: null, signal: null });
      if (Date.now() >= deadline) return 'timeout';
      await sleep(pollMs);
    }
  }

  private onConsole(text: string): void {
    this.consoleText = keepTail(this.consoleText + text, this.launch?.consoleKeepBytes ?? defaultKeepBytes);
    this.consoleFile?.write(text);
    this.notifyConsole();
  }

  private notifyConsole(): void {
    for (const listener of [...this.consoleListeners]) listener();
  }
}

function runDirPaths(dir: string): QemuPaths {
  return { qmpSocketPath: join(dir, 'qmp.sock'), pidFilePath: join(dir, 'qemu.pid'), consolePath: join(dir, 'console.log'), logPath: join(dir, 'qemu.log') };
}

function blockdevArg(disk: QemuDisk, node: string): string {
  const parts =
    'file' in disk
      ? ['driver=raw', 'file.driver=file', `file.filename=${commaEscape(disk.file)}`]
      : ['driver=nbd', 'server.type=unix', `server.path=${commaEscape(disk.socketPath)}`, `export=${commaEscape(disk.exportName ?? 'disk0')}`];
  return [...parts, `node-name=${node}`].join(',');
}

async function readPidFile(path: string): Promise<number | undefined> {
  try {
    const text = (await readFile(path, 'utf8')).trim();
    return /^\d+$/.test(text) && Number(text) > 0 ? Number(text) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Whether `pid` is a live process (a zombie is not). Where /proc tells a command line,
 * it must name the pidfile (QEMU's `-pidfile`): a pid the system gave to another process
 * since does not count.
 */
async function processAlive(pid: number, pidFilePath: string | undefined): Promise<boolean> {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  let stat: string;
  let cmdline: string;
  try {
    [stat, cmdline] = await Promise.all([readFile(`/proc/${pid}/stat`, 'utf8'), readFile(`/proc/${pid}/cmdline`, 'utf8')]);
  } catch (err) {
    // No /proc (not Linux): the signal said it exists. Gone meanwhile: not alive.
    return (err as NodeJS.ErrnoException).code === 'ENOENT' ? !(await procMounted()) : true;
  }
  const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  if (state === 'Z' || state === 'X') return false;
  return pidFilePath === undefined || cmdline.split('\0').some((arg) => arg === pidFilePath || basename(arg) === basename(pidFilePath));
}

let procMountedValue: boolean | undefined;
async function procMounted(): Promise<boolean> {
  procMountedValue ??= await readFile('/proc/self/stat').then(
    () => true,
    () => false,
  );
  return procMountedValue;
}

/** The newest `maxBytes` of a file, as text ('' if it does not exist). */
function readTail(path: string, maxBytes: number): string {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return '';
  }
  try {
    const size = fstatSync(fd).size;
    const length = Math.min(size, maxBytes);
    const buffer = Buffer.alloc(length);
    let done = 0;
    while (done < length) {
      const n = readSync(fd, buffer, done, length - done, size - length + done);
      if (n === 0) break;
      done += n;
    }
    return buffer.subarray(0, done).toString('utf8');
  } finally {
    closeSync(fd);
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
