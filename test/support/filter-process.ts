/** `ferry filter` as a child process, started the way an operator would, for e2e tests. */
import type { ChildProcess } from 'node:child_process';
import { expect } from 'vitest';
import { startFerry, type CliResult } from './cli.js';

export interface FilterProcess {
  child: ChildProcess;
  done: Promise<CliResult>;
  /** The NBD URI of the first disk (d0 by default), for qemu-io and QEMU. */
  uri: string;
  /** The NBD socket of the first disk, for the test client. */
  socketPath: string;
  /** Every disk's NBD socket, by id. */
  sockets: Map<string, string>;
  control: string;
  /** What it has printed so far. */
  stdout(): string;
  /** What it has logged so far. */
  stderr(): string;
  /** SIGTERM: a clean stop. */
  stop(): Promise<CliResult>;
}

/**
 * Starts `ferry filter` (or `ferry agent`) serving `image` as disk d0, or each of `disks`
 * (id -> image); resolves once it has printed its sockets (and an agent its fingerprint).
 */
export async function startFilterProcess(options: {
  image?: string;
  disks?: Record<string, string>;
  stateDir: string;
  store: string;
  args?: string[];
  command?: 'filter' | 'agent';
  env?: NodeJS.ProcessEnv;
}): Promise<FilterProcess> {
  const disks = Object.entries(options.disks ?? { d0: options.image! });
  const command = options.command ?? 'filter';
  const last = command === 'agent' && options.args?.includes('--listen') ? /^fingerprint /m : /^control /m;
  const { child, done } = startFerry([command, ...disks.flatMap(([id, image]) => ['--disk', `${id}=${image}`]), '--state-dir', options.stateDir, '--store', options.store, ...(options.args ?? [])], options.env);
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  let exited: CliResult | undefined;
  void done.then((r) => (exited = r));
  for (let i = 0; i < 300 && !last.test(stdout); i++) {
    if (exited) throw new Error(`ferry ${command} exited early (${exited.code}): ${exited.stderr}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const sockets = new Map<string, string>();
  for (const [id] of disks) {
    const exported = new RegExp(`^export ${id} (\\S+)$`, 'm').exec(stdout)?.[1];
    if (exported) sockets.set(id, new URL(exported).searchParams.get('socket')!);
  }
  const uri = new RegExp(`^export ${disks[0]![0]} (\\S+)$`, 'm').exec(stdout)?.[1];
  const control = /^control (\S+)$/m.exec(stdout)?.[1];
  if (!uri || !control || sockets.size !== disks.length) throw new Error(`ferry filter did not print its sockets: ${stdout}`);
  const socketPath = new URL(uri).searchParams.get('socket')!;
  expect(socketPath).toBeTruthy();
  return {
    child,
    done,
    uri,
    socketPath,
    sockets,
    control,
    stdout: () => stdout,
    stderr: () => stderr,
    stop: () => {
      child.kill('SIGTERM');
      return done;
    },
  };
}
