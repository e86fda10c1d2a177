/**
 * `ferry serve`: the migration service (the wizard API over the state database), and its
 * API tokens (`ferry serve token create|list|revoke`).
 */
import { realpath } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { isIPv4 } from 'node:net';
import { FerryError, Logger, ProcessLock, badInput, openDatabase, type Database } from '../../core/index.js';
import { FilterControlClient, loadWizardApi } from '../../api/index.js';
import type { CutoverRecord } from '../../cutover/index.js';
import { ServiceRecords, Steering, type HostRecord } from '../../migrate/index.js';
import type { Command } from '../command.js';
import { intOption, parse, positionals, s3SettingsFromFlags, stateDbHelp, stateDbPath, storeHelp } from '../options.js';
import { print, stderrSink } from '../terminal.js';
import { parseVm } from './agent.js';
import { filterOptions, filterOptionsHelp, runFilter, type FilterAddOn } from './filter.js';

export const defaultListen = '127.0.0.1:7070';

/** The host (and store) the service's own agent is known by. */
export const localHost = 'local';

export const serveCommand: Command = {
  name: 'serve',
  usage: `Usage: ferry serve [--listen HOST:PORT] [--db PATH] [--disk ID=PATH ...] [--vm NAME=DISK,...] [options]
       ferry serve --remote-only [--listen HOST:PORT] [--db PATH]
       ferry serve token create NAME     make an API token; prints it, once
       ferry serve token list            the tokens: names, when made, when last used
       ferry serve token revoke NAME     the token no longer opens the API

Runs the migration service: the wizard API (JSON over HTTP) and the web wizard (at /) for
hosts, stores and migrations, kept in the state database, and the steering that moves every
started migration on through the hosts' agents (over TLS, each pinned by its fingerprint):
base copies at the source, replicas at the destination, then the cutover. Killed and
started again, it carries on from the database.

On one machine it needs nothing else: it runs a local agent too (all that 'ferry agent'
does, for the --disk disks it is given, none by default), known as the host "local" (source
and destination) on its control socket, with its state in <db dir>/local-agent and, while
the service has no store, the store "local", file:<db dir>/store. --remote-only leaves the
local agent out: every host is then an agent on another machine.

Every API route is under /v1 and needs a bearer token ('Authorization: Bearer TOKEN'), but
GET /healthz and the page; GET /v1/openapi.json describes them all. A token is printed once
by 'ferry serve token create NAME'; the database keeps only its SHA-256. It also keeps the
agents' tokens, so it is private to its user (mode 0600).

The API speaks plain HTTP, so it listens on a loopback address only. Prints the local
agent's exports and control socket, then its url, openapi and db; logs go to stderr (never
a token). SIGTERM or SIGINT stops it cleanly: requests in flight finish, cutovers stop where
they are (the next start carries them on), and it exits 0.

Options:
  --listen ADDR     HOST:PORT where the API listens (default ${defaultListen}; port 0
                    picks a free one)
${stateDbHelp}
  --poll-ms MS      how often each migration is looked at (default 1000)
  --remote-only     no local agent
  --vm NAME=DISK,.. a VM of the local agent and its disks (repeatable), for its inventory
The local agent's options (as 'ferry filter'; --state-dir and --store have the defaults above):
${filterOptionsHelp}
  --json            print the addresses (or the token, the token list) as JSON
  -q, --quiet       log warnings and errors only
${storeHelp}`,
  async run(argv, signal) {
    if (argv[0] === 'token') return runToken(argv.slice(1));
    return runService(argv, signal);
  },
};

const serveOptions = {
  listen: { type: 'string' },
  db: { type: 'string' },
  's3-endpoint': { type: 'string' },
  's3-region': { type: 'string' },
  's3-profile': { type: 'string' },
  'poll-ms': { type: 'string' },
} as const;

async function runService(argv: string[], signal: AbortSignal): Promise<number> {
  const { values, positionals: args } = parse(argv, { ...serveOptions, ...filterOptions, vm: { type: 'string', multiple: true }, 'remote-only': { type: 'boolean' } });
  if (args.length > 0) throw badInput('arguments', args, "none, or 'token create NAME', 'token list', 'token revoke NAME'");
  const listen = parseListen(values.listen ?? defaultListen);
  const dbPath = stateDbPath(values.db);
  const db = openDatabase(dbPath);
  let lock: ProcessLock | undefined;
  try {
    lock = await ProcessLock.acquire(`serve:${await realpath(dbPath)}`, { purpose: 'ferry serve', description: `the service of ${dbPath}`, signal });
    const records = new ServiceRecords(db);
    const options = { records, db, dbPath, listen, values };
    if (values['remote-only']) {
      for (const flag of ['disk', 'vm', 'state-dir', 'socket-dir', 'control', 'store', 'rate', 'journal-limit', 'chunk-size'] as const) {
        if (values[flag] !== undefined) throw new FerryError('bad-input', `--${flag} is for the local agent, which --remote-only leaves out`);
      }
      const logger = new Logger(stderrSink, values.quiet ? 'warn' : 'info');
      const service = await startService({ ...options, logger });
      if (values.json) print(JSON.stringify(Object.fromEntries(service.lines)));
      else for (const [name, value] of service.lines) print(`${name} ${value}`);
      await new Promise<void>((resolve) => {
        if (signal.aborted) resolve();
        else signal.addEventListener('abort', () => resolve(), { once: true });
      });
      await service.close();
      return 0;
    }
    // The local agent: its state, control socket and store beside the database, by default.
    const home = dirname(dbPath);
    const stateDir = resolve(values['state-dir'] ?? join(home, 'local-agent'));
    const control = resolve(values.control ?? join(stateDir, 'control.sock'));
    const store = values.store ?? `file:${join(home, 'store')}`;
    const vms = (values.vm ?? []).map(parseVm);
    const addOn: FilterAddOn = { start: ({ logger }) => startService({ ...options, logger, local: { control, store } }) };
    return await runFilter('serve', { ...values, 'state-dir': stateDir, control, store }, [], signal, { vms, addOn });
  } finally {
    await lock?.release();
    db.close();
  }
}

/**
 * The service itself: the steering and the wizard API on its address. With `local`, the
 * local agent is the host named "local" (reached on its control socket) and, while the
 * service has no store, its store is the store named "local".
 */
async function startService(options: {
  records: ServiceRecords;
  db: Database;
  dbPath: string;
  listen: { host: string; port: number };
  values: { 'poll-ms'?: string; 's3-endpoint'?: string; 's3-region'?: string; 's3-profile'?: string };
  logger: Logger;
  local?: { control: string; store: string };
}): Promise<{ lines: Array<[string, string]>; close(): Promise<void> }> {
  const { records, db, dbPath, logger, values, local } = options;
  if (local) {
    const known = records.listHosts().find((h) => h.name === localHost);
    if (!known) records.createHost({ name: localHost, role: 'both', agent: { url: local.control, fingerprint: '', token: '' } });
    else if (known.agent.url !== local.control) records.setHostAgent(known.id, { url: local.control, fingerprint: '', token: '' });
    if (records.listStores().length === 0) records.createStore({ name: localHost, url: local.store });
  }
  // The local agent on its control socket; every other over TLS, pinned by its fingerprint, with its token.
  const connect = (h: HostRecord) => (h.agent.url.startsWith('/') ? new FilterControlClient(h.agent.url) : new FilterControlClient(h.agent.url, { token: h.agent.token, fingerprint: h.agent.fingerprint }));
  if (local) {
    const host = records.listHosts().find((h) => h.name === localHost)!;
    records.setInventory(host.id, await connect(host).inventory());
  }
  const steering = new Steering({ records, db, logger, connect, pollMs: intOption(values['poll-ms'], '--poll-ms', 50, 60_000), onTransition: failpoint() });
  const { openApiPath, serveWizardApi, wizardApp } = await loadWizardApi();
  const app = wizardApp({ records, logger, s3: s3SettingsFromFlags(values), steering, connect });
  const server = await serveWizardApi(app, options.listen.host, options.listen.port);
  logger.info('service running', { url: server.url, db: dbPath, ...(local ? { localAgent: local.control } : {}) });
  steering.start();
  if (records.listTokens().length === 0) logger.warn("no API token yet: make one with 'ferry serve token create NAME'", { db: dbPath });
  return {
    lines: [
      ['url', server.url],
      ['openapi', `${server.url}${openApiPath}`],
      ['db', dbPath],
    ],
    async close() {
      logger.info('stopping: finishing the requests in flight; cutovers stop where they are and go on at the next start');
      await server.close();
      await steering.stop();
      logger.info('service stopped cleanly');
    },
  };
}

/**
 * Fault injection for the tests: FERRY_FAILPOINT=cutover:<state> kills the service right
 * after a cutover persisted that state, as a crash would.
 */
function failpoint(): ((record: CutoverRecord) => void) | undefined {
  const state = /^cutover:(.+)$/.exec(process.env.FERRY_FAILPOINT ?? '')?.[1];
  return state === undefined ? undefined : (record) => void (record.state === state && process.kill(process.pid, 'SIGKILL'));
}

/** `HOST:PORT` or `[IPv6]:PORT`, on a loopback address. */
export function parseListen(text: string): { host: string; port: number } {
  const match = /^(?:\[([0-9A-Fa-f:.]+)\]|([^\s:[\]]+)):(\d{1,5})$/.exec(text);
  const port = Number(match?.[3]);
  if (!match || port > 65535) throw badInput('--listen', text, 'HOST:PORT, e.g. 127.0.0.1:7070 or [::1]:7070');
  const host = (match[1] ?? match[2])!;
  const loopback = host === 'localhost' || host === '::1' || (isIPv4(host) && host.startsWith('127.'));
  if (!loopback) {
    throw badInput('--listen', text, "a loopback address (127.x.x.x, [::1] or localhost): the API speaks plain HTTP, and bearer tokens must not cross a network in clear, until TLS comes with the agents' transport");
  }
  return { host, port };
}

async function runToken(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  const { values, positionals: args } = parse(rest, { db: { type: 'string' } });
  if (sub !== 'create' && sub !== 'list' && sub !== 'revoke') throw badInput('ferry serve token', sub, '"create NAME", "list" or "revoke NAME"');
  const db = openDatabase(stateDbPath(values.db));
  try {
    const records = new ServiceRecords(db);
    if (sub === 'list') {
      positionals(args, []);
      const tokens = records.listTokens();
      if (values.json) print(JSON.stringify(tokens.map((t) => ({ id: t.id, name: t.name, createdAt: iso(t.createdAtMs), lastUsedAt: t.lastUsedAtMs === undefined ? null : iso(t.lastUsedAtMs) }))));
      else if (tokens.length === 0) process.stderr.write("no tokens: 'ferry serve token create NAME' makes one\n");
      else for (const t of tokens) print(`${t.name}  ${t.id}  created ${iso(t.createdAtMs)}  last used ${t.lastUsedAtMs === undefined ? 'never' : iso(t.lastUsedAtMs)}`);
      return 0;
    }
    const [name] = positionals(args, ['NAME']);
    if (sub === 'revoke') {
      const revoked = records.revokeToken(name!);
      process.stderr.write(`token ${JSON.stringify(revoked.name)} (${revoked.id}) revoked\n`);
      return 0;
    }
    const { token, record } = records.createToken(name!);
    if (values.json) print(JSON.stringify({ id: record.id, name: record.name, token }));
    else print(token);
    process.stderr.write(`token ${JSON.stringify(record.name)} (${record.id}) made: it is shown only this once, keep it; the database keeps only its SHA-256\n`);
    return 0;
  } catch (err) {
    if (err instanceof FerryError && err.code === 'conflict' && sub === 'create') throw new FerryError('conflict', `${err.message}: pick another name, or 'ferry serve token revoke ${argv[1]}' first`);
    throw err;
  } finally {
    db.close();
  }
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}
