import { setTimeout as sleep } from 'node:timers/promises';
import { badInput, FerryError, formatBytes } from '../../core/index.js';
import { ReplicaApplier, type ReplicaState } from '../../migrate/index.js';
import { Repository } from '../../store/index.js';
import type { Command } from '../command.js';
import { intOption, parse, positionals, required, storeFromFlags, storeHelp, storeOptions } from '../options.js';
import { print, progressReporter, stderrSink } from '../terminal.js';

export const replicaCommand: Command = {
  name: 'replica',
  usage: `Usage: ferry replica init --store URL --disk ID --manifest ID PATH [options]
       ferry replica apply --store URL PATH [--follow] [options]

init   restores the base manifest into PATH (verifying every chunk) and starts the
       replica's replay state (PATH.ferry-replica.json) at the manifest's epoch.
apply  applies the disk's deltas from the store, in replay order, each verified before a
       byte of it is written; with --follow it keeps polling until interrupted (Ctrl-C).
       Applying is idempotent: an interrupted apply is simply run again.

Do not run two appliers (or an apply and a 'ferry cutover') on one replica at once.

Options:
  --disk ID            (init) the disk's id at the filter: names its deltas in the store
  --manifest ID        (init) the base copy's manifest id (or a unique prefix)
  --concurrency N      (init) downloads in flight (default 8)
  --follow             (apply) keep applying until interrupted
  --poll-ms MS         (apply --follow) how often to look for deltas (default 500)
  --json               print the replica's state as JSON
  -q, --quiet          no progress bar
${storeHelp}`,
  async run(argv, signal) {
    const [sub, ...rest] = argv;
    if (sub === 'init') return init(rest, signal);
    if (sub === 'apply') return apply(rest, signal);
    throw badInput('subcommand', sub, '"init" or "apply"');
  },
};

async function init(argv: string[], signal: AbortSignal): Promise<number> {
  const { values, positionals: args } = parse(argv, {
    ...storeOptions,
    disk: { type: 'string' },
    manifest: { type: 'string' },
    concurrency: { type: 'string' },
  });
  const [replicaPath] = positionals(args, ['PATH']);
  const diskId = required(values.disk, '--disk');
  const manifestId = required(values.manifest, '--manifest');
  const concurrency = intOption(values.concurrency, '--concurrency', 1, 256);
  const store = storeFromFlags(values);
  const bar = progressReporter('restore', values.quiet === true || values.json === true);
  try {
    const repo = await Repository.open(store);
    const applier = await ReplicaApplier.create({ repo, diskId, manifestId, replicaPath: replicaPath!, concurrency, signal, onProgress: bar.update });
    bar.done();
    const state = applier.snapshot();
    if (values.json) print(JSON.stringify({ replica: replicaPath, ...state }));
    else print(`replica ${replicaPath}: disk ${state.diskId}, base ${state.manifestId}, replay from seq ${state.epoch}`);
    return 0;
  } finally {
    bar.done();
    await store.close();
  }
}

async function apply(argv: string[], signal: AbortSignal): Promise<number> {
  const { values, positionals: args } = parse(argv, {
    ...storeOptions,
    follow: { type: 'boolean' },
    'poll-ms': { type: 'string' },
  });
  const [replicaPath] = positionals(args, ['PATH']);
  const pollMs = intOption(values['poll-ms'], '--poll-ms', 10, 3_600_000) ?? 500;
  const store = storeFromFlags(values);
  try {
    const repo = await Repository.open(store);
    const applier = await ReplicaApplier.open(repo, replicaPath!);
    if (!values.follow) {
      const result = await applier.applyAvailable(signal);
      report(replicaPath!, applier.snapshot(), result.applied, values.json === true);
      return 0;
    }
    let failures = 0;
    while (!signal.aborted) {
      try {
        const result = await applier.applyAvailable(signal);
        failures = 0;
        if (result.applied > 0 && !values.quiet) report(replicaPath!, applier.snapshot(), result.applied, values.json === true);
      } catch (err) {
        if (signal.aborted) break;
        // Store trouble is retried; damaged data is not something waiting will fix.
        if (err instanceof FerryError && err.code !== 'store-unavailable' && err.code !== 'io') throw err;
        failures++;
        stderrSink('warn', 'applying deltas failed, will retry', { error: (err as Error).message, failures });
      }
      await sleep(Math.min(30_000, pollMs * 2 ** Math.min(failures, 6)), undefined, { signal }).catch(() => {});
    }
    return 0;
  } finally {
    await store.close();
  }
}

function report(replicaPath: string, state: Readonly<ReplicaState>, applied: number, json: boolean): void {
  if (json) {
    print(JSON.stringify({ replica: replicaPath, applied, ...state }));
    return;
  }
  const consistent = state.resync === undefined && state.nextSeq >= state.consistentFromSeq;
  print(
    `replica ${replicaPath}: applied ${applied} delta${applied === 1 ? '' : 's'}; next seq ${state.nextSeq}, ` +
      `${consistent ? 'consistent' : 'not consistent yet (resync under way)'}; ${state.deltasApplied} deltas, ${formatBytes(state.bytesApplied)} applied in all`,
  );
}
