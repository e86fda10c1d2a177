/** Runs the built `ferry` CLI (bin/ferry over dist/) as a child process. */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const ferryBin = fileURLToPath(new URL('../../bin/ferry', import.meta.url));
const built = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));

export interface CliResult {
  code: number | null;
  /** The signal that ended it, if one did. */
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export function assertBuilt(): void {
  if (!existsSync(built)) throw new Error('dist/ is missing: run `npm run build` (./scripts/test does) before the e2e tests');
}

export function startFerry(args: string[], env: NodeJS.ProcessEnv = {}): { child: ChildProcess; done: Promise<CliResult> } {
  assertBuilt();
  const child = spawn(process.execPath, [ferryBin, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => (stdout += d));
  child.stderr!.on('data', (d) => (stderr += d));
  const done = new Promise<CliResult>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
  return { child, done };
}

export function ferry(args: string[], env: NodeJS.ProcessEnv = {}): Promise<CliResult> {
  return startFerry(args, env).done;
}

/**
 * Starts `ferry replica apply --follow` on a replica and resolves once it holds the replica's
 * lock (it says so on stderr): a cutover started after that takes the replica over from it
 * instead of racing it for the lock.
 */
export async function startFollower(store: string, replica: string, args: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<{ child: ChildProcess; done: Promise<CliResult> }> {
  const follower = startFerry(['replica', 'apply', '--store', store, ...args, replica, '--follow', '--poll-ms', '50'], env);
  let err = '';
  const following = new Promise<void>((resolve) => {
    follower.child.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
      if (/following replica/.test(err)) resolve();
    });
  });
  const ended = await Promise.race([following.then(() => undefined), follower.done]);
  if (ended) throw new Error(`replica apply --follow ${replica} exited (${ended.code ?? ended.signal}) before following: ${ended.stderr}`);
  return follower;
}
