/**
 * The `ferry` command line: the only place that reads the environment, prints to the
 * terminal and exits the process.
 */
import { asFerryError } from '../core/index.js';
import type { Command } from './command.js';
import { baseCopyCommand } from './commands/base-copy.js';
import { copyCommand } from './commands/copy.js';
import { cutoverCommand } from './commands/cutover.js';
import { filterCommand } from './commands/filter.js';
import { replicaCommand } from './commands/replica.js';
import { restoreCommand } from './commands/restore.js';
import { seedCommand } from './commands/seed.js';
import { statusCommand } from './commands/status.js';
import { verifyCommand } from './commands/verify.js';
import { exitCodes } from './exit-codes.js';

const commands: Command[] = [
  copyCommand,
  restoreCommand,
  verifyCommand,
  filterCommand,
  baseCopyCommand,
  replicaCommand,
  cutoverCommand,
  statusCommand,
  seedCommand,
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
    process.stdout.write(`${topic ? topic.usage : usage()}\n`);
    return 0;
  }
  if (name === '--version') {
    process.stdout.write('ferry 0.1.0\n');
    return 0;
  }
  const command = commands.find((c) => c.name === name);
  if (!command) {
    process.stderr.write(`ferry: unknown command ${JSON.stringify(name)}\n\n${usage()}\n`);
    return exitCodes['bad-input'];
  }
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

process.exitCode = await main(process.argv.slice(2));
