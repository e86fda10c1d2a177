/**
 * The migration service from the command line: `ferry migration`, `ferry host` and `ferry
 * store` call the wizard API of a running `ferry serve`, as the web wizard does. Text for
 * people (a progress bar on a terminal with `status --watch`), `--json` for scripts.
 */
import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { WizardClient } from '../../api/index.js';
import { FerryError, badInput, formatBytes } from '../../core/index.js';
import { finalMigrationStates } from '../../migrate/index.js';
import type { Command } from '../command.js';
import { exitCodes } from '../exit-codes.js';
import { parse, positionals } from '../options.js';
import { print, progressReporter } from '../terminal.js';

export const defaultServiceUrl = 'http://127.0.0.1:7070';

const serviceOptions = {
  service: { type: 'string' },
  'token-file': { type: 'string' },
} as const;

const serviceHelp = `  --service URL        the service (default $FERRY_SERVICE, else ${defaultServiceUrl})
  --token-file FILE    a file holding an API token (default: $FERRY_TOKEN); 'ferry serve
                       token create NAME' makes one
  --json               print the API's reply as JSON`;

async function client(values: { service?: string; 'token-file'?: string }): Promise<WizardClient> {
  const url = (values.service ?? process.env.FERRY_SERVICE ?? defaultServiceUrl).replace(/\/$/, '');
  if (!/^https?:\/\/[^/\s]+$/.test(url)) throw badInput('--service', url, 'http://HOST:PORT of a running ferry serve');
  const file = values['token-file'];
  const token = file ? (await readFile(file, 'utf8').catch((err: Error) => Promise.reject(new FerryError('bad-input', `--token-file ${file}: ${err.message}`)))).trim() : process.env.FERRY_TOKEN;
  if (!token) throw new FerryError('bad-input', "an API token is needed: --token-file FILE or $FERRY_TOKEN ('ferry serve token create NAME' makes one)");
  return new WizardClient(url, token);
}

/** Reads a JSON document from FILE ('-': standard input). */
async function jsonFile(path: string, what: string): Promise<unknown> {
  const text = path === '-' ? await readStdin() : await readFile(path, 'utf8').catch((err: Error) => Promise.reject(new FerryError('not-found', `${what} ${path}: ${err.message}`)));
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new FerryError('bad-input', `${what} ${path}: not JSON: ${(err as Error).message}`);
  }
}

async function readStdin(): Promise<string> {
  let text = '';
  for await (const chunk of process.stdin) text += String(chunk);
  return text;
}

interface Migration {
  id: string;
  name: string;
  state: string;
  paused?: boolean;
  error?: string;
  cutoverId?: string;
}

interface Progress {
  state: string;
  bytesToGo: number;
  etaSeconds?: number;
  disks: Array<{
    vm: string;
    disk: string;
    manifestId?: string;
    baseCopy?: { state?: string; bytesDone?: number; bytesTotal?: number; rateBytesPerSec?: number };
    source?: { mode: string; lagSeconds: number; backlogBytes: number; predictedPauseMs: number | null };
    replica?: { state?: string; consistent?: boolean };
  }>;
  cutover?: { id: string; state: string; error?: string; maxDowntimeToRunningMs?: number; maxDowntimeToHealthyMs?: number };
}

export const migrationCommand: Command = {
  name: 'migration',
  usage: `Usage: ferry migration list
       ferry migration create FILE          a migration from a JSON document (the API's body; - for stdin)
       ferry migration validate ID
       ferry migration start ID             base copies, then replicas that follow the changes
       ferry migration status ID [--watch]  where it is; --watch: until it ends (progress bar)
       ferry migration events ID
       ferry migration seed-arrived ID DEVICE  transport seed: the device is at the destination, there
       ferry migration pause ID             park its disks (changes tracked, nothing ships)
       ferry migration resume ID
       ferry migration cutover ID [--at TIME] [--hold] [--verify deltas|full]
       ferry migration go ID                the go for a cutover held for it
       ferry migration cancel-cutover ID    roll the cutover back, if it has not committed
       ferry migration cancel ID

Drives the migrations of a running 'ferry serve' through its wizard API (docs: GET
/v1/openapi.json). The document of 'create' is what POST /v1/migrations takes: name,
sourceHost, destinationHost, store (ids from 'ferry host list' and 'ferry store list'), vms,
throttle, cutover, runbook (docs/FORMAT.md, service tables).

Options:
${serviceHelp}
  --watch              (status) follow the migration until it ends
  --at TIME            (cutover) not before this ISO 8601 time
  --hold               (cutover) wait for 'ferry migration go' once the pre-checks pass
  --verify MODE        (cutover) deltas (default) or full: SHA-256 of whole disks while paused`,
  async run(argv, signal) {
    const [sub, ...rest] = argv;
    const { values, positionals: args } = parse(rest, { ...serviceOptions, watch: { type: 'boolean' }, at: { type: 'string' }, hold: { type: 'boolean' }, verify: { type: 'string' } });
    const api = await client(values);
    const json = values.json === true;
    const show = (m: Migration) => (json ? print(JSON.stringify(m)) : print(`${m.id}  ${m.name}  ${m.state}${m.paused ? ' (paused)' : ''}${m.error ? `  (${m.error})` : ''}`));
    switch (sub) {
      case 'list': {
        positionals(args, []);
        const { migrations } = await api.get<{ migrations: Migration[] }>('/v1/migrations');
        if (json) print(JSON.stringify(migrations));
        else for (const m of migrations) show(m);
        return 0;
      }
      case 'create': {
        const [file] = positionals(args, ['FILE']);
        show(await api.post<Migration>('/v1/migrations', await jsonFile(file!, 'migration')));
        return 0;
      }
      case 'validate':
      case 'start':
      case 'pause':
      case 'resume':
      case 'go':
      case 'cancel':
      case 'cancel-cutover': {
        const [id] = positionals(args, ['ID']);
        const path = { validate: 'validate', start: 'start', pause: 'pause', resume: 'resume', go: 'cutover/go', cancel: 'cancel', 'cancel-cutover': 'cutover/cancel' }[sub];
        show(await api.post<Migration>(`/v1/migrations/${encodeURIComponent(id!)}/${path}`));
        return 0;
      }
      case 'seed-arrived': {
        const [id, device] = positionals(args, ['ID', 'DEVICE']);
        show(await api.post<Migration>(`/v1/migrations/${encodeURIComponent(id!)}/seed/arrived`, { device }));
        return 0;
      }
      case 'cutover': {
        const [id] = positionals(args, ['ID']);
        if (values.verify !== undefined && values.verify !== 'deltas' && values.verify !== 'full') throw badInput('--verify', values.verify, 'deltas or full');
        const body = { ...(values.at ? { at: values.at } : {}), ...(values.hold ? { hold: true } : {}), ...(values.verify ? { verify: values.verify } : {}) };
        show(await api.post<Migration>(`/v1/migrations/${encodeURIComponent(id!)}/cutover`, body));
        return 0;
      }
      case 'events': {
        const [id] = positionals(args, ['ID']);
        const { events } = await api.get<{ events: Array<{ seq: number; at: string; message: string }> }>(`/v1/migrations/${encodeURIComponent(id!)}/events`);
        if (json) print(JSON.stringify(events));
        else for (const e of events) print(`${e.at}  ${e.message}`);
        return 0;
      }
      case 'status': {
        const [id] = positionals(args, ['ID']);
        return status(api, id!, { watch: values.watch === true, json, quiet: values.quiet === true, signal });
      }
      default:
        throw badInput('ferry migration', sub, 'list, create, validate, start, status, events, seed-arrived, pause, resume, cutover, go, cancel-cutover or cancel');
    }
  },
};

/** Prints where a migration is; with `watch`, follows it (a progress bar of its base copies) until it ends. */
async function status(api: WizardClient, id: string, options: { watch: boolean; json: boolean; quiet: boolean; signal: AbortSignal }): Promise<number> {
  const path = `/v1/migrations/${encodeURIComponent(id)}/progress`;
  const bar = progressReporter('base copy', options.quiet || options.json || !options.watch);
  let last = '';
  for (;;) {
    const p = await api.get<Progress>(path);
    const copies = p.disks.map((d) => d.baseCopy).filter((c) => c !== undefined);
    const total = copies.reduce((n, c) => n + (c.bytesTotal ?? 0), 0);
    if (p.state === 'copying' && total > 0) {
      const rate = copies.reduce((n, c) => n + (c.state === 'running' ? (c.rateBytesPerSec ?? 0) : 0), 0);
      bar.update({ bytesDone: total - p.bytesToGo, bytesTotal: total, rateBytesPerSec: rate, etaSec: p.etaSeconds ?? Infinity, elapsedMs: 0 });
    }
    const text = options.json ? JSON.stringify(p) : describe(id, p);
    if (!options.watch || text !== last) {
      if (options.watch && p.state !== 'copying') bar.done();
      if (!options.watch || p.state !== 'copying') print(text);
      last = text;
    }
    if (!options.watch || (finalMigrationStates as readonly string[]).includes(p.state) || options.signal.aborted) return p.state === 'failed' ? exitCodes['invalid-state'] : exitCodes.ok;
    await sleep(1000, undefined, { signal: options.signal }).catch(() => {});
  }
}

function describe(id: string, p: Progress): string {
  const lines = [`migration ${id}: ${p.state}${p.state === 'copying' ? `, ${formatBytes(p.bytesToGo)} to copy` : ''}`];
  for (const d of p.disks) {
    const parts = [
      d.manifestId ? 'base copied' : d.baseCopy ? `base copy ${d.baseCopy.state}` : 'not copied yet',
      ...(d.source ? [`${d.source.mode}, lag ${d.source.lagSeconds.toFixed(1)} s / ${formatBytes(d.source.backlogBytes)}, predicted pause ${d.source.predictedPauseMs === null ? '?' : `${Math.round(d.source.predictedPauseMs)} ms`}`] : []),
      ...(d.replica ? [`replica ${d.replica.state}${d.replica.consistent ? ', consistent' : ''}`] : []),
    ];
    lines.push(`  ${d.vm}/${d.disk}: ${parts.join('; ')}`);
  }
  if (p.cutover) {
    const c = p.cutover;
    lines.push(`  cutover ${c.id}: ${c.state}${c.error ? ` (${c.error})` : ''}${c.maxDowntimeToRunningMs !== undefined ? `, downtime ${Math.round(c.maxDowntimeToRunningMs)} ms to running, ${Math.round(c.maxDowntimeToHealthyMs ?? 0)} ms to healthy` : ''}`);
  }
  return lines.join('\n');
}

export const hostCommand: Command = {
  name: 'host',
  usage: `Usage: ferry host list
       ferry host add NAME --role source|destination|both --agent URL --fingerprint FP --agent-token-file FILE [--inventory FILE]

The hosts a running 'ferry serve' steers, each by its agent: its address (https://HOST:PORT),
the fingerprint and token 'ferry agent --listen' printed and reads. --inventory: a JSON file
{ "vms": [{ "name", "disks": [{ "id", "sizeBytes"? }] }] } of the VMs there.

Options:
${serviceHelp}`,
  async run(argv) {
    const [sub, ...rest] = argv;
    const { values, positionals: args } = parse(rest, { ...serviceOptions, role: { type: 'string' }, agent: { type: 'string' }, fingerprint: { type: 'string' }, 'agent-token-file': { type: 'string' }, inventory: { type: 'string' } });
    const api = await client(values);
    const show = (h: { id: string; name: string; role: string; agent: { url: string } }) => print(values.json ? JSON.stringify(h) : `${h.id}  ${h.name}  ${h.role}  ${h.agent.url}`);
    if (sub === 'list') {
      positionals(args, []);
      const { hosts } = await api.get<{ hosts: Array<{ id: string; name: string; role: string; agent: { url: string } }> }>('/v1/hosts');
      for (const h of hosts) show(h);
      return 0;
    }
    if (sub !== 'add') throw badInput('ferry host', sub, 'list or add');
    const [name] = positionals(args, ['NAME']);
    const tokenFile = values['agent-token-file'];
    if (!tokenFile) throw new FerryError('bad-input', '--agent-token-file is required: the file of the token the agent was started with');
    const token = (await readFile(tokenFile, 'utf8').catch((err: Error) => Promise.reject(new FerryError('bad-input', `--agent-token-file ${tokenFile}: ${err.message}`)))).trim();
    const inventory = values.inventory ? await jsonFile(values.inventory, 'inventory') : undefined;
    show(await api.post('/v1/hosts', { name, role: values.role, agent: { url: values.agent, fingerprint: values.fingerprint, token }, ...(inventory ? { inventory } : {}) }));
    return 0;
  },
};

export const storeCommand: Command = {
  name: 'store',
  usage: `Usage: ferry store list
       ferry store add NAME URL     and check it (file:<absolute dir> or s3://bucket[/prefix])
       ferry store check ID

The stores of a running 'ferry serve'.

Options:
${serviceHelp}`,
  async run(argv) {
    const [sub, ...rest] = argv;
    const { values, positionals: args } = parse(rest, serviceOptions);
    const api = await client(values);
    type Store = { id: string; name: string; url: string; lastCheck?: { reachable: boolean; message: string } };
    const show = (s: Store) => print(values.json ? JSON.stringify(s) : `${s.id}  ${s.name}  ${s.url}${s.lastCheck ? `  ${s.lastCheck.reachable ? 'reachable' : 'UNREACHABLE'}: ${s.lastCheck.message}` : ''}`);
    if (sub === 'list') {
      positionals(args, []);
      for (const s of (await api.get<{ stores: Store[] }>('/v1/stores')).stores) show(s);
      return 0;
    }
    if (sub === 'add') {
      const [name, url] = positionals(args, ['NAME', 'URL']);
      const store = await api.post<Store>('/v1/stores', { name, url });
      const checked = await api.post<Store>(`/v1/stores/${store.id}/check`);
      show(checked);
      return checked.lastCheck?.reachable ? exitCodes.ok : exitCodes['store-unavailable'];
    }
    if (sub === 'check') {
      const [id] = positionals(args, ['ID']);
      const checked = await api.post<Store>(`/v1/stores/${encodeURIComponent(id!)}/check`);
      show(checked);
      return checked.lastCheck?.reachable ? exitCodes.ok : exitCodes['store-unavailable'];
    }
    throw badInput('ferry store', sub, 'list, add or check');
  },
};
