/**
 * `ferry serve`: the migration service (the wizard API over the state database), and its
 * API tokens (`ferry serve token create|list|revoke`).
 */
import { realpath } from 'node:fs/promises';
import { isIPv4 } from 'node:net';
import { FerryError, Logger, ProcessLock, badInput, openDatabase } from '../../core/index.js';
import { FilterControlClient, loadWizardApi } from '../../api/index.js';
import type { CutoverRecord } from '../../cutover/index.js';
import { ServiceRecords, Steering, type HostRecord } from '../../migrate/index.js';
import type { Command } from '../command.js';
import { intOption, parse, positionals, s3SettingsFromFlags, stateDbHelp, stateDbPath } from '../options.js';
import { print, stderrSink } from '../terminal.js';

export const defaultListen = '127.0.0.1:7070';

export const serveCommand: Command = {
  name: 'serve',
  usage: `Usage: ferry serve [--listen HOST:PORT] [--db PATH]
       ferry serve token create NAME     make an API token; prints it, once
       ferry serve token list            the tokens: names, when made, when last used
       ferry serve token revoke NAME     the token no longer opens the API

Runs the migration service: the wizard API (JSON over HTTP) for hosts, stores and
migrations, kept in the state database, and the steering that moves every started
migration on through the hosts' agents (over TLS, each pinned by its fingerprint): base
copies at the source, replicas at the destination, then the cutover. Killed and started
again, it carries on from the database. Every route is under /v1 and needs a bearer token
('Authorization: Bearer TOKEN'), but GET /healthz; GET /v1/openapi.json describes them all.
A token is printed once by 'ferry serve token create NAME'; the database keeps only its
SHA-256. It also keeps the agents' tokens, so it is private to its user (mode 0600).

The API speaks plain HTTP, so it listens on a loopback address only; TLS comes with the
agents' transport. Prints its address; logs go to stderr (never a token). SIGTERM or SIGINT
stops it cleanly: requests in flight finish, and it exits 0.

Options:
  --listen ADDR     HOST:PORT where the API listens (default ${defaultListen}; port 0
                    picks a free one)
${stateDbHelp}
  --s3-endpoint URL for s3: stores that name none (default: $AWS_ENDPOINT_URL_S3,
                    $AWS_ENDPOINT_URL, or AWS); credentials come from $AWS_ACCESS_KEY_ID and
                    $AWS_SECRET_ACCESS_KEY, or a profile (--s3-profile NAME, $AWS_PROFILE)
  --s3-region NAME  for s3: stores that name none (default: $AWS_REGION, or us-east-1)
  --poll-ms MS      how often each migration is looked at (default 1000)
  --json            print the address (or the token, the token list) as JSON
  -q, --quiet       log warnings and errors only`,
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
  const { values, positionals: args } = parse(argv, serveOptions);
  if (args.length > 0) throw badInput('arguments', args, "none, or 'token create NAME', 'token list', 'token revoke NAME'");
  const { host, port } = parseListen(values.listen ?? defaultListen);
  const logger = new Logger(stderrSink, values.quiet ? 'warn' : 'info');
  const dbPath = stateDbPath(values.db);
  const db = openDatabase(dbPath);
  let lock: ProcessLock | undefined;
  try {
    lock = await ProcessLock.acquire(`serve:${await realpath(dbPath)}`, { purpose: 'ferry serve', description: `the service of ${dbPath}`, signal });
    const records = new ServiceRecords(db);
    // Each host's agent over TLS, pinned by its fingerprint, with its token.
    const connect = (h: HostRecord) => new FilterControlClient(h.agent.url, { token: h.agent.token, fingerprint: h.agent.fingerprint });
    const steering = new Steering({
      records,
      db,
      logger,
      connect,
      pollMs: intOption(values['poll-ms'], '--poll-ms', 50, 60_000),
      onTransition: failpoint(),
    });
    const { openApiPath, serveWizardApi, wizardApp } = await loadWizardApi();
    const app = wizardApp({ records, logger, s3: s3SettingsFromFlags(values), steering, connect });
    const server = await serveWizardApi(app, host, port);
    if (values.json) print(JSON.stringify({ url: server.url, openapi: `${server.url}${openApiPath}`, db: dbPath }));
    else {
      print(`url ${server.url}`);
      print(`openapi ${server.url}${openApiPath}`);
      print(`db ${dbPath}`);
    }
    logger.info('service running', { url: server.url, db: dbPath });
    steering.start();
    if (records.listTokens().length === 0) logger.warn("no API token yet: make one with 'ferry serve token create NAME'", { db: dbPath });

    await new Promise<void>((resolve) => {
      if (signal.aborted) resolve();
      else signal.addEventListener('abort', () => resolve(), { once: true });
    });
    logger.info('stopping: finishing the requests in flight; cutovers stop where they are and go on at the next start');
    await server.close();
    await steering.stop();
    logger.info('service stopped cleanly');
    return 0;
  } finally {
    await lock?.release();
    db.close();
  }
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
