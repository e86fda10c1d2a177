/**
 * The VmDriver over QEMU and QMP.
 *
 * Source: a VM the operator started; ferry attaches to it by its QMP socket and only pauses,
 * resumes, stops it and asks its status and health. Destination: a launch spec; `start()`
 * launches QEMU detached (it outlives the coordinator) in the run directory, booting from
 * the replicas.
 *
 * Every call connects to QMP, acts and disconnects, so a coordinator restarted after a
 * crash picks up where it was: nothing lives in this object but the spec. A QMP monitor
 * serves one client at a time: calls of one driver take turns, and nothing else may hold
 * the monitor for long.
 */
import { access, constants } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { FerryError, isFerryError, Logger, throwIfAborted, makeDirectory } from '../../core/index.js';
import { QemuVm, type QemuAttachOptions, type QemuDisk } from '../qemu/index.js';
import type { HealthCheck, VmDriver, VmStatus } from '../vm-driver.js';
import { defaultPath, isRunnable } from './command.js';
import { commandProbe, consoleProbe, waitHealthy, type HealthProbe } from './health.js';

/** A VM the operator runs, reached by its QMP socket. */
export interface QemuSourceSpec {
  role: 'source';
  /** The VM's name: FERRY_VM for health commands, and in messages. */
  name: string;
  /** A QMP monitor for ferry alone (`-qmp unix:<path>,server=on,wait=off`). */
  qmpSocketPath: string;
  /** QEMU's `-pidfile`: lets `stop()` kill a QEMU that does not quit. */
  pidFilePath?: string;
  /** The serial console's file, for health checks on the console. */
  consolePath?: string;
}

/** A VM ferry launches from its disks (the replicas). */
export interface QemuDestinationSpec {
  role: 'destination';
  name: string;
  /**
   * Holds qmp.sock, qemu.pid, console.log and qemu.log; the VM that runs there is the
   * destination VM. Created if missing; keep its path short (unix socket paths are limited).
   */
  runDir: string;
  kernelPath: string;
  initrdPath?: string;
  /** Kernel command line. */
  append?: string;
  /** As virtio-blk devices in this order: vda, vdb, ... */
  disks: QemuDisk[];
  memoryMiB?: number;
  cpus?: number;
  accel?: 'tcg' | 'kvm';
  /** Default 'qemu-system-x86_64'. */
  binary?: string;
  extraArgs?: string[];
}

export interface QemuDriverOptions {
  /** How long QMP may take to answer (and a launched QEMU to open it); default 30 s. */
  qmpTimeoutMs?: number;
  /** How long `stop()` waits for QEMU to quit before it kills it; default 30 s. */
  stopTimeoutMs?: number;
  /** Time one try of a health command may take; default 60 s (and never past the check's deadline). */
  commandTimeoutMs?: number;
  /** The environment of health commands, besides FERRY_VM and FERRY_ACTION (only the CLI reads its own). Default: a standard PATH. */
  env?: Record<string, string | undefined>;
  logger?: Logger;
}

export class QemuDriver implements VmDriver {
  readonly description: string;
  private readonly qmpTimeoutMs: number;
  private readonly logger: Logger;
  private turn: Promise<unknown> = Promise.resolve();

  constructor(
    readonly spec: QemuSourceSpec | QemuDestinationSpec,
    private readonly options: QemuDriverOptions = {},
  ) {
    this.description = `qemu ${spec.name} (${spec.role})`;
    this.qmpTimeoutMs = options.qmpTimeoutMs ?? 30_000;
    this.logger = options.logger ?? Logger.silent();
  }

  /** The serial console's file, where known. */
  get consolePath(): string | undefined {
    return this.spec.role === 'destination' ? join(resolve(this.spec.runDir), 'console.log') : this.spec.consolePath;
  }

  /** 'running'; 'paused' for any other QMP run state (paused, prelaunch, suspended, io-error, ...); 'absent' when no QEMU runs. */
  async status(signal?: AbortSignal): Promise<VmStatus> {
    throwIfAborted(signal);
    try {
      return await this.withVm(async (vm) => {
        const status = await vm.status();
        return { state: status.running ? 'running' : 'paused', detail: status.status };
      });
    } catch (err) {
      if (isFerryError(err, 'not-found')) return { state: 'absent', detail: (err as Error).message };
      return { state: 'unknown', detail: (err as Error).message };
    }
  }

  /**
   * Source: the VM runs. Destination: nothing runs in the run directory yet, and QEMU, the
   * kernel (and initrd) and the replicas are there.
   */
  async check(signal?: AbortSignal): Promise<void> {
    const spec = this.spec;
    const status = await this.status(signal);
    if (spec.role === 'source') {
      if (status.state !== 'running') throw new FerryError('invalid-state', `${this.description}: expected it running, its status is ${status.state} (${status.detail})`);
      return;
    }
    if (status.state !== 'absent') throw new FerryError('invalid-state', `${this.description}: a VM already runs in ${spec.runDir} (${status.detail})`);
    const binary = spec.binary ?? 'qemu-system-x86_64';
    if (!(await isRunnable(binary, this.options.env?.PATH ?? defaultPath))) throw new FerryError('not-found', `${this.description}: QEMU (${binary}) is not installed or not executable`);
    const files: Array<[string, string, number]> = [
      ['kernel', spec.kernelPath, constants.R_OK],
      ...(spec.initrdPath ? [['initrd', spec.initrdPath, constants.R_OK] as [string, string, number]] : []),
      ...spec.disks.flatMap((d, i) => ('file' in d ? [[`disk ${i}`, d.file, constants.R_OK | constants.W_OK] as [string, string, number]] : [])),
    ];
    for (const [what, path, mode] of files) {
      try {
        await access(path, mode);
      } catch (err) {
        throw new FerryError('not-found', `${this.description}: its ${what} ${path} cannot be used: ${(err as Error).message}`);
      }
    }
  }

  /**
   * Destination: launches the VM unless one runs in the run directory already (a paused
   * one stays paused). Source: ferry does not start it; resolves if it runs.
   */
  async start(signal?: AbortSignal): Promise<void> {
    throwIfAborted(signal);
    const spec = this.spec;
    if (spec.role === 'source') {
      const status = await this.status(signal);
      if (status.state === 'running' || status.state === 'paused') return;
      throw new FerryError('invalid-state', `${this.description}: not running, and ferry does not start a source VM (${status.detail})`);
    }
    await this.inTurn(async () => {
      try {
        const vm = await QemuVm.attach(this.attachOptions());
        this.logger.info('destination VM runs already', { vm: spec.name, pid: vm.pid });
        await vm.disconnect();
        return;
      } catch (err) {
        // Anything but "nothing runs there" may mean it runs: never launch a second one.
        if (!isFerryError(err, 'not-found')) throw new FerryError('invalid-state', `${this.description}: cannot tell whether it runs, not starting it: ${(err as Error).message}`, { cause: err });
      }
      throwIfAborted(signal);
      await makeDirectory(spec.runDir);
      const vm = new QemuVm({
        runDir: spec.runDir,
        detached: true,
        kernelPath: spec.kernelPath,
        initrdPath: spec.initrdPath,
        append: spec.append,
        disks: spec.disks,
        memoryMiB: spec.memoryMiB,
        cpus: spec.cpus,
        accel: spec.accel,
        binary: spec.binary,
        extraArgs: spec.extraArgs,
        logger: this.logger,
      });
      await vm.start({ timeoutMs: this.qmpTimeoutMs });
      this.logger.info('destination VM launched', { vm: spec.name, pid: vm.pid });
      await vm.disconnect();
    });
  }

  /** QMP `stop`: resolves once the VM's in-flight IO is drained. */
  async pause(signal?: AbortSignal): Promise<void> {
    throwIfAborted(signal);
    await this.withVm((vm) => vm.pause(), 'pause');
  }

  /** QMP `cont`. */
  async resume(signal?: AbortSignal): Promise<void> {
    throwIfAborted(signal);
    await this.withVm((vm) => vm.resume(), 'resume');
  }

  /** QMP `quit`, then SIGKILL if QEMU has not exited within `stopTimeoutMs`. Nothing to do when it does not run. */
  async stop(signal?: AbortSignal): Promise<void> {
    throwIfAborted(signal);
    await this.inTurn(async () => {
      let vm: QemuVm;
      try {
        vm = await QemuVm.attach(this.attachOptions());
      } catch (err) {
        if (isFerryError(err, 'not-found')) return;
        throw this.failure('stop', err);
      }
      const exit = await vm.quit({ timeoutMs: this.options.stopTimeoutMs ?? 30_000 }).catch((err: unknown) => {
        throw this.failure('stop', err);
      });
      this.logger.info('VM stopped', { vm: this.spec.name, pid: vm.pid, ...exit });
    });
  }

  /**
   * Waits until QMP says 'running', then the console file shows `check.console` (any of
   * its output since this QEMU started: a destination's console file starts empty at each
   * launch), then `check.command` exits 0.
   */
  async health(check: HealthCheck, signal?: AbortSignal): Promise<void> {
    const alive = async () => {
      const status = await this.status(signal);
      if (status.state === 'absent') throw new FerryError('invalid-state', `the VM does not run: ${status.detail}`);
      return status;
    };
    const probes: HealthProbe[] = [
      {
        name: 'status',
        async run() {
          const status = await alive();
          return status.state === 'running' ? undefined : `QMP status is ${status.detail}`;
        },
      },
    ];
    if (check.console !== undefined) {
      const path = this.consolePath;
      if (!path) throw new FerryError('bad-input', `${this.description}: a console health check needs the VM's console file (consolePath)`);
      probes.push(consoleProbe(path, check.console, async () => void (await alive())));
    }
    if (check.command) {
      const env = { PATH: defaultPath, ...this.options.env, FERRY_VM: this.spec.name, FERRY_ACTION: 'health' };
      probes.push(commandProbe(check.command, env, this.options.commandTimeoutMs ?? 60_000));
    }
    await waitHealthy(this.description, probes, check.timeoutMs, this.consolePath, signal);
  }

  private attachOptions(): QemuAttachOptions {
    const spec = this.spec;
    const common = { timeoutMs: this.qmpTimeoutMs, logger: this.logger };
    return spec.role === 'destination'
      ? { ...common, runDir: spec.runDir }
      : { ...common, qmpSocketPath: spec.qmpSocketPath, pidFilePath: spec.pidFilePath, consolePath: spec.consolePath };
  }

  /** Connects, runs `fn`, disconnects. Without `action`, errors pass as they are (status maps them). */
  private withVm<T>(fn: (vm: QemuVm) => Promise<T>, action?: string): Promise<T> {
    return this.inTurn(async () => {
      let vm: QemuVm;
      try {
        vm = await QemuVm.attach(this.attachOptions());
      } catch (err) {
        if (action === undefined) throw err;
        if (isFerryError(err, 'not-found')) throw new FerryError('invalid-state', `${this.description}: cannot ${action}: the VM does not run (${(err as Error).message})`, { cause: err });
        throw this.failure(action, err);
      }
      try {
        return await fn(vm);
      } catch (err) {
        throw action === undefined ? err : this.failure(action, err);
      } finally {
        await vm.disconnect();
      }
    });
  }

  private failure(action: string, err: unknown): FerryError {
    const code = isFerryError(err) ? err.code : 'io';
    return new FerryError(code, `${this.description}: ${action} failed: ${(err as Error).message}`, { cause: err });
  }

  /** Runs `fn` once the calls before it are done: one QMP client at a time. */
  private inTurn<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.turn.then(fn, fn);
    this.turn = result.catch(() => undefined);
    return result;
  }
}
