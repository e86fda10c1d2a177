/**
 * Runs an operator's command (an argv, no shell) for a driver: with a time limit, in its own
 * process group so that a timeout or an abort kills what it started too, keeping the tails
 * of its output for results and error messages.
 */
import { spawn } from 'node:child_process';
import { access, constants } from 'node:fs/promises';
import { join } from 'node:path';
import { FerryError } from '../../core/index.js';

export interface CommandOptions {
  /** The whole environment of the command. */
  env: Record<string, string | undefined>;
  timeoutMs: number;
  signal?: AbortSignal;
  cwd?: string;
}

export interface CommandResult {
  /** Exit code; null when killed by a signal. */
  code: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  stdout: string;
  stderr: string;
}

/** Where a command's PATH lookup goes when the caller gives no PATH. */
export const defaultPath = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** Whether `file` can be run: a path that is executable, or a name found on `path`. */
export async function isRunnable(file: string, path = defaultPath): Promise<boolean> {
  const candidates = file.includes('/') ? [file] : path.split(':').filter(Boolean).map((dir) => join(dir, file));
  for (const candidate of candidates) {
    try {
      await access(candidate, constants.X_OK);
      return true;
    } catch {
      // not this one
    }
  }
  return false;
}

const keepBytes = 64 * 1024;

/**
 * Runs `argv`; resolves with how it ended (a non-zero exit or a timeout is a result, not
 * an error). Rejects when it cannot be started, or with 'aborted' when `signal` fires.
 */
export function runCommand(argv: string[], options: CommandOptions): Promise<CommandResult> {
  const [file, ...args] = argv;
  if (file === undefined) return Promise.reject(new FerryError('bad-input', 'an empty command'));
  if (options.signal?.aborted) return Promise.reject(new FerryError('aborted', `${describeCommand(argv)}: aborted`, { cause: options.signal.reason }));
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { env: options.env, cwd: options.cwd, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    let aborted = false;
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (text: string) => (stdout = keepTail(stdout + text)));
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (text: string) => (stderr = keepTail(stderr + text)));

    let grace: NodeJS.Timeout | undefined;
    const killGroup = () => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
      } catch {
        // gone already
      }
      // Something that left the group may hold the output pipes open: stop reading.
      grace ??= setTimeout(() => {
        child.stdout.destroy();
        child.stderr.destroy();
      }, 2000);
    };
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup();
    }, options.timeoutMs);
    const onAbort = () => {
      aborted = true;
      killGroup();
    };
    options.signal?.addEventListener('abort', onAbort, { once: true });
    const finish = () => {
      clearTimeout(timer);
      clearTimeout(grace);
      options.signal?.removeEventListener('abort', onAbort);
    };

    child.once('error', (err) => {
      finish();
      reject(new FerryError('bad-input', `cannot run ${describeCommand(argv)}: ${err.message}`, { cause: err }));
    });
    child.once('close', (code, signal) => {
      finish();
      if (aborted) reject(new FerryError('aborted', `${describeCommand(argv)}: aborted`, { cause: options.signal?.reason }));
      else resolve({ code, signal, timedOut, stdout, stderr });
    });
  });
}

/** An argv as an operator would type it, for messages. */
export function describeCommand(argv: string[]): string {
  return argv.map((arg) => (/^[\w@%+=:,./-]+$/.test(arg) ? arg : JSON.stringify(arg))).join(' ');
}

/** How a command failed, for an error message: its exit and the tail of its stderr. */
export function describeFailure(argv: string[], result: CommandResult, timeoutMs: number): string {
  const how = result.timedOut ? `did not finish within ${timeoutMs} ms` : result.signal ? `was killed by ${result.signal}` : `exited with code ${result.code}`;
  const tail = result.stderr.trim().split('\n').slice(-10).join('\n');
  return `${describeCommand(argv)} ${how}${tail ? `; stderr:\n${tail}` : ''}`;
}

function keepTail(text: string): string {
  return text.length > keepBytes ? text.slice(text.length - keepBytes) : text;
}
