import { join, resolve } from 'node:path';
import { badInput, formatRate, Logger } from '../../core/index.js';
import { filterControlApp, serveOnUnixSocket, type FetchHandler, type UnixHttpServer } from '../../api/index.js';
import { claimSocketPath, FilterService, ReplicaService, SeedImportJob, type FilterDiskSpec } from '../../migrate/index.js';
import { Repository } from '../../store/index.js';
import type { Command } from '../command.js';
import { parse, rateOption, required, s3SettingsFromFlags, sizeOption, storeFromFlags, storeHelp, storeOptions, type OptionSpec } from '../options.js';
import { print, stderrSink } from '../terminal.js';

/** The flags of `ferry filter`, which `ferry agent` takes too. */
export const filterOptions = {
  ...storeOptions,
  disk: { type: 'string', multiple: true },
  'state-dir': { type: 'string' },
  'socket-dir': { type: 'string' },
  control: { type: 'string' },
  rate: { type: 'string' },
  'journal-limit': { type: 'string' },
  'chunk-size': { type: 'string' },
} satisfies OptionSpec;

export const filterOptionsHelp = `  --disk ID=PATH       a disk to serve (repeatable); ID: letters, digits, '.', '_', '-'
  --state-dir DIR      tracker state and journals (kept across restarts)
  --socket-dir DIR     where the NBD sockets go (default: the state dir)
  --control PATH       control socket (default: <state-dir>/control.sock)
  --rate RATE          the link's replication budget for all disks, e.g. 50M/s (default: unlimited)
  --journal-limit SIZE unshipped journal per disk before falling back to the bitmap (default 1G)
  --chunk-size SIZE    chunk size if the store is new (default 4M)`;

export type FilterValues = ReturnType<typeof parse<typeof filterOptions>>['values'];

/**
 * What `ferry agent` adds to a filter: started once the disks and the control socket are up
 * (a second process on the same state stops before), stopped before them; its lines are
 * printed after the control socket's (`name value`, and as fields of --json). `control`
 * answers the control API as the unix socket does.
 */
export interface FilterAddOn {
  start(context: { service: FilterService; control: FetchHandler; stateDir: string; logger: Logger }): Promise<{ lines: Array<[name: string, value: string]>; close(): Promise<void> }>;
}

/** How `ferry agent` runs a filter: with no disks allowed, the replicas it follows, its VMs, and its add-on. */
export interface AgentRole {
  addOn?: FilterAddOn;
  /** Which of its disks belong to which VM (`--vm`), for the inventory it reports. */
  vms?: Array<{ name: string; disks: string[] }>;
}

export const filterCommand: Command = {
  name: 'filter',
  usage: `Usage: ferry filter --disk ID=PATH [--disk ID=PATH ...] --state-dir DIR --store URL [options]

Runs the long-lived filter of the source host. Each disk is exported over NBD on its own
unix socket, <socket-dir>/<ID>.sock, export name ID: attach the VM to it, e.g.
  qemu ... -blockdev driver=nbd,server.type=unix,server.path=DIR/ID.sock,export=ID,node-name=d0
Every write is recorded by the disk's change tracker (journal and state under
<state-dir>/<ID>/) and shipped to the store as deltas. A control API (HTTP, JSON) listens
on a unix socket: see 'ferry status' and 'ferry cutover', and README.md for its routes.

QEMU does not reconnect to an NBD server that went away: keep this process running for as
long as the VMs use the disks. SIGTERM or SIGINT stops it cleanly (finishes IO in flight,
flushes, seals the journal, closes the trackers so a restart needs no full resync) and it
exits 0. Prints where each export and the control socket are; logs go to stderr.

Options:
${filterOptionsHelp}
  --json               print the exports and control socket as one JSON line
  -q, --quiet          log warnings and errors only
${storeHelp}`,
  async run(argv, signal) {
    const { values, positionals } = parse(argv, filterOptions);
    return runFilter('filter', values, positionals, signal);
  },
};

/**
 * Runs a filter until `signal`: serves the disks, the control socket and, for an agent, the
 * replicas it follows (registry in the state dir) and its add-on; prints where they are; on
 * the signal stops them cleanly and resolves 0. An agent may serve no disks (a destination
 * host); then --store is needed only with disks.
 */
export async function runFilter(command: string, values: FilterValues, args: string[], signal: AbortSignal, agent?: AgentRole): Promise<number> {
  if (args.length > 0) throw badInput('arguments', args, 'none (disks are given with --disk ID=PATH)');
  const disks = (values.disk ?? []).map(parseDisk);
  if (disks.length === 0 && !agent) throw badInput('--disk', undefined, 'at least one --disk ID=PATH');
  const stateDir = resolve(required(values['state-dir'], '--state-dir'));
  const socketDir = resolve(values['socket-dir'] ?? stateDir);
  const controlPath = resolve(values.control ?? join(stateDir, 'control.sock'));
  const rate = rateOption(values.rate, '--rate') ?? 0;
  const journalLimit = sizeOption(values['journal-limit'], '--journal-limit');
  const logger = new Logger(stderrSink, values.quiet ? 'warn' : 'info');
  const store = disks.length > 0 || values.store !== undefined ? storeFromFlags(values) : undefined;
  try {
    const repo = store && (await Repository.openOrInit(store, sizeOption(values['chunk-size'], '--chunk-size')));
    await claimSocketPath(controlPath); // before the disks: a second filter stops here
    const service = await FilterService.start({
      disks,
      stateDir,
      socketDir,
      repo,
      rateBytesPerSec: rate,
      journal: journalLimit === undefined ? undefined : { hardLimitBytes: journalLimit },
      logger,
    });
    let replicas: ReplicaService | undefined;
    const seedImports = agent ? new SeedImportJob({ s3: s3SettingsFromFlags(values), logger }) : undefined;
    let control: UnixHttpServer | undefined;
    let added: Awaited<ReturnType<FilterAddOn['start']>> | undefined;
    try {
      if (agent) replicas = await ReplicaService.open({ stateDir, s3: s3SettingsFromFlags(values), logger });
      const app = filterControlApp(service, { replicas, seedImports, vms: agent?.vms, logger, env: process.env });
      control = await serveOnUnixSocket(app.fetch, controlPath, logger.child({ component: 'control' }));
      added = await agent?.addOn?.start({ service, control: app.fetch, stateDir, logger });
    } catch (err) {
      await control?.close();
      await replicas?.close();
      await service.close();
      throw err;
    }
    const exports = service.list().map((d) => ({ id: d.id, uri: d.uri, socketPath: d.socketPath }));
    const lines = added?.lines ?? [];
    if (values.json) {
      print(JSON.stringify({ exports, control: controlPath, ...Object.fromEntries(lines) }));
    } else {
      for (const e of exports) print(`export ${e.id} ${e.uri}`);
      print(`control ${controlPath}`);
      for (const [name, value] of lines) print(`${name} ${value}`);
    }
    logger.info(`${command} running`, { disks: exports.length, ...(replicas ? { replicas: replicas.list().length } : {}), rate: rate ? formatRate(rate) : 'unlimited', control: controlPath, ...Object.fromEntries(lines) });

    await new Promise<void>((resolve) => {
      if (signal.aborted) resolve();
      else signal.addEventListener('abort', () => resolve(), { once: true });
    });
    logger.info('stopping: finishing IO in flight, sealing journals');
    await added?.close();
    await control.close();
    await seedImports?.close();
    await replicas?.close();
    await service.close();
    logger.info(`${command} stopped cleanly`);
    return 0;
  } finally {
    await store?.close();
  }
}

function parseDisk(value: string): FilterDiskSpec {
  const at = value.indexOf('=');
  if (at <= 0 || at === value.length - 1) throw badInput('--disk', value, 'ID=PATH, e.g. --disk vm1-root=/var/lib/vms/vm1.img');
  return { id: value.slice(0, at), path: resolve(value.slice(at + 1)) };
}
