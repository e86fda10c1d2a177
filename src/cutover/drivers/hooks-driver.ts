/**
 * The VmDriver made of an operator's commands, one per action (virsh, qm, a script: any
 * hypervisor). Each command is an argv, run without a shell, with FERRY_VM=<name> and
 * FERRY_ACTION=<action> in its environment, and a time limit (it is killed with its process
 * group after). It succeeds by exiting 0; it must be idempotent like the port (pausing a
 * paused VM exits 0), since a restarted coordinator repeats the action it was in.
 *
 * The `status` command prints one word: running, paused or absent.
 */
import { FerryError, throwIfAborted } from '../../core/index.js';
import type { HealthCheck, VmDriver, VmRunState, VmStatus } from '../vm-driver.js';
import { defaultPath, describeCommand, describeFailure, isRunnable, runCommand, type CommandResult } from './command.js';
import { commandProbe, consoleProbe, waitHealthy, type HealthProbe } from './health.js';

export const hookActions = ['start', 'pause', 'resume', 'stop', 'status', 'health'] as const;
export type HookAction = (typeof hookActions)[number];

export interface HooksDriverOptions {
  /** The VM's name: FERRY_VM, and in messages. */
  name: string;
  /** The VM's side, for messages: 'source', 'destination'. */
  role?: string;
  /** The command (argv) of each action; an action without one fails when called. `health`: exits 0 once the VM is healthy. */
  commands: Partial<Record<HookAction, string[]>>;
  /** Time one command may take; default 60 s. */
  timeoutMs?: number;
  /** The environment of the commands, besides FERRY_VM and FERRY_ACTION (only the CLI reads its own). Default: a standard PATH. */
  env?: Record<string, string | undefined>;
  cwd?: string;
  /**
   * The VM's serial console file, for a health check on the console. All of it counts:
   * the start command should begin a fresh one, so that only this boot's output is there.
   */
  consolePath?: string;
}

const states: readonly VmRunState[] = ['running', 'paused', 'absent'];

export class HooksDriver implements VmDriver {
  readonly description: string;
  private readonly timeoutMs: number;

  constructor(private readonly options: HooksDriverOptions) {
    this.description = `hooks ${options.name}${options.role ? ` (${options.role})` : ''}`;
    this.timeoutMs = options.timeoutMs ?? 60_000;
    for (const [action, argv] of Object.entries(options.commands)) {
      if (!(hookActions as readonly string[]).includes(action)) throw new FerryError('bad-input', `${this.description}: no action "${action}" (actions: ${hookActions.join(', ')})`);
      if (argv !== undefined && (!Array.isArray(argv) || argv.length === 0 || !argv.every((a) => typeof a === 'string'))) {
        throw new FerryError('bad-input', `${this.description}: the ${action} command must be a non-empty list of strings`);
      }
    }
  }

  /** Whether the operator gave a command for `action`. */
  has(action: HookAction): boolean {
    return this.options.commands[action] !== undefined;
  }

  /** The status command's word; anything else is 'unknown', with what it printed. */
  async status(signal?: AbortSignal): Promise<VmStatus> {
    const result = await this.run('status', signal);
    const said = result.stdout.trim();
    if ((states as readonly string[]).includes(said)) return { state: said as VmRunState, detail: said };
    return { state: 'unknown', detail: `${describeCommand(this.command('status'))} printed ${JSON.stringify(said.slice(0, 200))}, not one of ${states.join('|')}` };
  }

  /** The commands this side needs can be run, and the VM is where it should be (running at the source, absent at the destination). */
  async check(signal?: AbortSignal): Promise<void> {
    const needed: HookAction[] = this.options.role === 'destination' ? ['start', 'stop', 'status'] : ['pause', 'resume', 'stop', 'status'];
    for (const action of needed) {
      const [file] = this.command(action);
      if (!(await isRunnable(file!, this.env(action).PATH))) throw new FerryError('not-found', `${this.description}: the ${action} command ${JSON.stringify(file)} is not an executable file (or not on PATH)`);
    }
    const { state, detail } = await this.status(signal);
    const expected = this.options.role === 'destination' ? 'absent' : 'running';
    if (state !== expected) throw new FerryError('invalid-state', `${this.description}: status is ${detail}, expected ${expected}`);
  }

  async start(signal?: AbortSignal): Promise<void> {
    await this.run('start', signal);
  }

  async pause(signal?: AbortSignal): Promise<void> {
    await this.run('pause', signal);
  }

  async resume(signal?: AbortSignal): Promise<void> {
    await this.run('resume', signal);
  }

  async stop(signal?: AbortSignal): Promise<void> {
    await this.run('stop', signal);
  }

  /**
   * Waits until the `health` command exits 0 (without one: until `status` says running),
   * then the console file shows `check.console`, then `check.command` exits 0.
   */
  async health(check: HealthCheck, signal?: AbortSignal): Promise<void> {
    const probes: HealthProbe[] = [];
    if (this.has('health')) {
      probes.push({ ...commandProbe(this.command('health'), this.env('health'), this.timeoutMs, this.options.cwd), name: 'health (the health command)' });
    } else if (this.has('status')) {
      probes.push({
        name: 'status',
        run: async (_remainingMs, probeSignal) => {
          const status = await this.status(probeSignal);
          return status.state === 'running' ? undefined : `status is ${status.detail}`;
        },
      });
    } else {
      throw new FerryError('bad-input', `${this.description}: a health check needs a health or a status command`);
    }
    if (check.console !== undefined) {
      if (!this.options.consolePath) throw new FerryError('bad-input', `${this.description}: a console health check needs the VM's console file (consolePath)`);
      probes.push(consoleProbe(this.options.consolePath, check.console));
    }
    if (check.command) probes.push(commandProbe(check.command, this.env('health'), this.timeoutMs, this.options.cwd));
    await waitHealthy(this.description, probes, check.timeoutMs, this.options.consolePath, signal);
  }

  /** Runs the action's command; rejects unless it exits 0. */
  private async run(action: HookAction, signal: AbortSignal | undefined): Promise<CommandResult> {
    throwIfAborted(signal);
    const argv = this.command(action);
    let result: CommandResult;
    try {
      result = await runCommand(argv, { env: this.env(action), timeoutMs: this.timeoutMs, signal, cwd: this.options.cwd });
    } catch (err) {
      const code = err instanceof FerryError ? err.code : 'io';
      throw new FerryError(code, `${this.description}: ${action}: ${(err as Error).message}`, { cause: err });
    }
    if (result.code !== 0) throw new FerryError('io', `${this.description}: ${action} failed: ${describeFailure(argv, result, this.timeoutMs)}`);
    return result;
  }

  private command(action: HookAction): string[] {
    const argv = this.options.commands[action];
    if (!argv) throw new FerryError('bad-input', `${this.description}: no ${action} command (the hooks driver needs one to ${action} the VM)`);
    return argv;
  }

  private env(action: HookAction): Record<string, string | undefined> {
    return { PATH: defaultPath, ...this.options.env, FERRY_VM: this.options.name, FERRY_ACTION: action };
  }
}
