/**
 * The migration service's parts as child processes, started the way an operator starts
 * them: `ferry agent` with its control API over TLS on loopback (its own state dir and
 * token file), and `ferry serve` with a token made by `ferry serve token create`; plus a
 * small client of the wizard API.
 */
import type { ChildProcess } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { ferry, startFerry, type CliResult } from './cli.js';

export interface AgentProcess {
  child: ChildProcess;
  done: Promise<CliResult>;
  /** https://127.0.0.1:PORT of its control API. */
  url: string;
  fingerprint: string;
  token: string;
  control: string;
  /** NBD socket of each disk it serves, by id. */
  sockets: Map<string, string>;
  stderr(): string;
  stop(): Promise<CliResult>;
}

/** A TCP port free on 127.0.0.1 now: for an agent that must come back at the same address. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Resolves once `pattern` shows in what `child` printed, failing if it exits first. */
async function printed(child: ChildProcess, done: Promise<CliResult>, pattern: RegExp, what: string): Promise<() => string> {
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  let exited: CliResult | undefined;
  void done.then((r) => (exited = r));
  for (let i = 0; i < 600 && !pattern.test(out); i++) {
    if (exited) throw new Error(`${what} exited early (${exited.code ?? exited.signal}): ${exited.stderr}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  if (!pattern.test(out)) throw new Error(`${what} did not print ${pattern}: ${out}`);
  return () => out;
}

/** `ferry agent` over TLS on 127.0.0.1 (port 0 unless given), serving `disks` (id -> image) with `store`. */
export async function startAgent(options: { stateDir: string; disks?: Record<string, string>; store?: string; port?: number; name: string; args?: string[] }): Promise<AgentProcess> {
  const token = `agent-${options.name}-token-0123456789abcdef`;
  const tokenFile = join(options.stateDir, '..', `${options.name}.token`);
  await writeFile(tokenFile, `${token}\n`, { mode: 0o600 });
  const disks = Object.entries(options.disks ?? {});
  const { child, done } = startFerry([
    'agent',
    ...disks.flatMap(([id, image]) => ['--disk', `${id}=${image}`]),
    '--state-dir',
    options.stateDir,
    ...(options.store ? ['--store', options.store] : []),
    '--listen',
    `127.0.0.1:${options.port ?? 0}`,
    '--token-file',
    tokenFile,
    ...(options.args ?? []),
  ]);
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const stdout = (await printed(child, done, /^fingerprint \S+$/m, `ferry agent ${options.name}`))();
  const sockets = new Map<string, string>();
  for (const [id] of disks) sockets.set(id, new URL(new RegExp(`^export ${id} (\\S+)$`, 'm').exec(stdout)![1]!).searchParams.get('socket')!);
  return {
    child,
    done,
    url: /^agent (\S+)$/m.exec(stdout)![1]!,
    fingerprint: /^fingerprint (\S+)$/m.exec(stdout)![1]!,
    token,
    control: /^control (\S+)$/m.exec(stdout)![1]!,
    sockets,
    stderr: () => stderr,
    stop: () => {
      child.kill('SIGTERM');
      return done;
    },
  };
}

export interface ServiceProcess {
  child: ChildProcess;
  done: Promise<CliResult>;
  url: string;
  stderr(): string;
  stop(): Promise<CliResult>;
}

/** Makes an API token for `db` (`ferry serve token create`). */
export async function serviceToken(db: string, name = 'e2e'): Promise<string> {
  const made = await ferry(['serve', 'token', 'create', name, '--db', db]);
  if (made.code !== 0) throw new Error(`ferry serve token create failed: ${made.stderr}`);
  return made.stdout.trim();
}

/** `ferry serve` on `db`, on a loopback port (0: any free one), looking at migrations every `pollMs`. */
export async function startService(options: { db: string; port?: number; pollMs?: number; env?: NodeJS.ProcessEnv }): Promise<ServiceProcess> {
  const { child, done } = startFerry(['serve', '--listen', `127.0.0.1:${options.port ?? 0}`, '--db', options.db, '--poll-ms', String(options.pollMs ?? 200)], options.env);
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const stdout = (await printed(child, done, /^db /m, 'ferry serve'))();
  return {
    child,
    done,
    url: /^url (\S+)$/m.exec(stdout)![1]!,
    stderr: () => stderr,
    stop: () => {
      child.kill('SIGTERM');
      return done;
    },
  };
}

/** A client of the wizard API: JSON in, `{ status, body }` out. */
export function wizardClient(url: () => string, token: string) {
  return async function call<T = Record<string, unknown>>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }> {
    const reply = await fetch(`${url()}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: reply.status, body: (await reply.json()) as T };
  };
}
