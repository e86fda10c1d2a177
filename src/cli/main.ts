/**
 * The `ferry` command line: the only place that reads the environment, prints to the
 * terminal and exits the process.
 */
import { asFerryError } from '../core/index.js';
import type { Command } from './command.js';
import { exitCodes } from './exit-codes.js';

/**
 * The commands, each loaded only when it runs: the AWS SDK, hono and tar-stream together
 * take longer to load than a small copy takes to run.
 */
const commands: Array<{ name: string; summary: string; load: () => Promise<Command> }> = [
  { name: 'copy', summary: 'copy a disk into a store (background copy); prints the manifest id', load: async () => (await import('./commands/copy.js')).copyCommand },
  { name: 'restore', summary: 'rebuild a disk from a manifest in a store, verifying every chunk', load: async () => (await import('./commands/restore.js')).restoreCommand },
  { name: 'verify', summary: 'check that two disks, or a disk and a manifest, are byte-identical', load: async () => (await import('./commands/verify.js')).verifyCommand },
  { name: 'filter', summary: 'serve disks to VMs over NBD, capturing every write and shipping it to a store', load: async () => (await import('./commands/filter.js')).filterCommand },
  { name: 'agent', summary: "a host's long-lived agent: the filter, with its control API also over TLS for the migration service", load: async () => (await import('./commands/agent.js')).agentCommand },
  { name: 'base-copy', summary: "copy a live disk's existing data into the store, through its running filter", load: async () => (await import('./commands/base-copy.js')).baseCopyCommand },
  { name: 'replica', summary: 'build a replica from a base copy and keep it warm by applying deltas', load: async () => (await import('./commands/replica.js')).replicaCommand },
  { name: 'cutover', summary: 'cut a group of VMs over by plan (or one disk): pause, drain, apply, verify, commit, start in runbook order', load: async () => (await import('./commands/cutover.js')).cutoverCommand },
  { name: 'fence', summary: 'release a source disk fenced by its cutover (failback), on purpose', load: async () => (await import('./commands/fence.js')).fenceCommand },
  { name: 'status', summary: "show a running filter's disks: mode, lag, backlog, rates, predicted pause", load: async () => (await import('./commands/status.js')).statusCommand },
  { name: 'seed', summary: 'offline seeding: export disks to a portable device, verify it, import it into a store', load: async () => (await import('./commands/seed.js')).seedCommand },
  { name: 'serve', summary: 'the migration service: the wizard API for hosts, stores and migrations, and its tokens', load: async () => (await import('./commands/serve.js')).serveCommand },
  { name: 'migration', summary: "a running service's migrations: create, validate, start, status, cutover, go, cancel", load: async () => (await import('./commands/service-client.js')).migrationCommand },
  { name: 'host', summary: "a running service's hosts (their agents): list, add", load: async () => (await import('./commands/service-client.js')).hostCommand },
  { name: 'store', summary: "a running service's stores: list, add, check", load: async () => (await import('./commands/service-client.js')).storeCommand },
];

function usage(): string {
  const width = Math.max(...commands.map((c) => c.name.length));
  return `Usage: ferry COMMAND [options]

ferry migrates running virtual machines' disks between sites.

Commands:
${commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`).join('\n')}

Run 'ferry COMMAND --help' for a command's options. Sizes take K, M, G, T (binary);
rates take K, M, G per second (decimal), e.g. 50M/s or 400Mbit/s.`;
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === 'help' || name === '--help' || name === '-h') {
    const topic = commands.find((c) => c.name === rest[0]);
    process.stdout.write(`${topic ? (await topic.load()).usage : usage()}\n`);
    return 0;
  }
  if (name === '--version') {
    process.stdout.write('ferry 0.1.0\n');
    return 0;
  }
  const entry = commands.find((c) => c.name === name);
  if (!entry) {
    process.stderr.write(`ferry: unknown command ${JSON.stringify(name)}\n\n${usage()}\n`);
    return exitCodes['bad-input'];
  }
  const command = await entry.load();
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(`${command.usage}\n`);
    return 0;
  }
  const controller = new AbortController();
  const onSignal = () => controller.abort(new Error('interrupted'));
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    return await command.run(rest, controller.signal);
  } catch (err) {
    const error = asFerryError(err);
    process.stderr.write(`\nferry ${name}: ${error.code === 'internal' ? `internal error: ${error.stack}` : error.message}\n`);
    if (error.code === 'bad-input') process.stderr.write(`Run 'ferry ${name} --help' for usage.\n`);
    return exitCodes[error.code];
  }
}

// The AWS SDK warns on every run under Node 20 that its releases from 2027 will need Node 22.
// ferry pins its SDK (package-lock.json) and supports Node 20; the notice is for ferry's
// maintainers (README, Requirements), not for an operator running a copy. Set the variable
// to "false" to see it.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
// Exit once the command is done, whatever handles are left: a stalled S3 request that was
// aborted can keep its socket open in the SDK's agent, and a filter that stopped cleanly
// would linger until it closed.
process.exit(await main(process.argv.slice(2)));
