/**
 * The health check both drivers run: a list of probes tried in order, each again and again
 * until it passes, all within one deadline. The error names the probe that did not pass and
 * why, and shows the console's tail.
 */
import { open } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { FerryError, isFerryError } from '../../core/index.js';
import { describeFailure, runCommand } from './command.js';

export interface HealthProbe {
  /** The check in messages: "status", "console /login:/", "command ...". */
  name: string;
  /**
   * One try: resolves with nothing once the check passes, or with why it has not passed yet;
   * throws when it cannot pass any more (the VM is gone).
   */
  run(remainingMs: number, signal?: AbortSignal): Promise<string | undefined>;
}

const retryMs = 100;

/** Runs the probes in order; rejects naming the first that fails or runs out of time. */
export async function waitHealthy(what: string, probes: HealthProbe[], timeoutMs: number, consolePath: string | undefined, signal?: AbortSignal): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (const probe of probes) {
    for (;;) {
      if (signal?.aborted) throw new FerryError('aborted', `${what}: health check aborted`, { cause: signal.reason });
      let reason: string | undefined;
      try {
        reason = await probe.run(Math.max(1, deadline - Date.now()), signal);
      } catch (err) {
        if (isFerryError(err, 'aborted')) throw err;
        throw new FerryError('invalid-state', `${what}: health check ${probe.name} failed: ${(err as Error).message}${await consoleTail(consolePath)}`, { cause: err });
      }
      if (reason === undefined) break;
      if (Date.now() + retryMs > deadline) {
        throw new FerryError('io', `${what}: health check ${probe.name} did not pass within ${timeoutMs} ms: ${reason}${await consoleTail(consolePath)}`);
      }
      await sleep(retryMs, undefined, { signal }).catch(() => undefined);
    }
  }
}

/** Passes once the console file shows `pattern` (its whole content counts). */
export function consoleProbe(path: string, pattern: string, alive?: () => Promise<void>): HealthProbe {
  let regex: RegExp;
  try {
    regex = new RegExp(pattern);
  } catch (err) {
    throw new FerryError('bad-input', `health check console: not a regular expression: ${JSON.stringify(pattern)}: ${(err as Error).message}`);
  }
  return {
    name: `console ${regex}`,
    async run() {
      if (regex.test(await readTail(path, 1024 * 1024))) return undefined;
      await alive?.();
      return `not shown yet on ${path}`;
    },
  };
}

/** Passes once `argv` exits 0; each try may take what is left of the deadline, up to `maxMs`. */
export function commandProbe(argv: string[], env: Record<string, string | undefined>, maxMs: number, cwd?: string): HealthProbe {
  return {
    name: `command ${JSON.stringify(argv)}`,
    async run(remainingMs, signal) {
      const timeoutMs = Math.min(maxMs, remainingMs);
      const result = await runCommand(argv, { env, timeoutMs, signal, cwd });
      return result.code === 0 ? undefined : describeFailure(argv, result, timeoutMs);
    },
  };
}

/** The console's tail for an error message, or nothing without a console file. */
export async function consoleTail(path: string | undefined): Promise<string> {
  if (!path) return '';
  const tail = (await readTail(path, 3000)).trimEnd();
  return `\n--- console (tail) ${path} ---\n${tail || '(nothing)'}`;
}

/** The newest `maxBytes` of a file, as text ('' if it does not exist). */
async function readTail(path: string, maxBytes: number): Promise<string> {
  let file;
  try {
    file = await open(path, 'r');
  } catch {
    return '';
  }
  try {
    const size = (await file.stat()).size;
    const length = Math.min(size, maxBytes);
    const { buffer, bytesRead } = await file.read(Buffer.alloc(length), 0, length, size - length);
    return buffer.subarray(0, bytesRead).toString('utf8');
  } finally {
    await file.close();
  }
}
