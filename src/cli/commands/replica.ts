import { badInput, formatBytes, Logger } from '../../core/index.js';
import { ReplicaApplier, type ReplicaState } from '../../delta/index.js';
import { initReplica } from '../../migrate/index.js';
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
apply  applies the deltas of the replica's replication from the store, in replay order,
       each verified before a byte of it is written; with --follow it keeps polling until
       the replication is cut over (then it exits 0) or it is interrupted (Ctrl-C).
       Applying is idempotent: an interrupted apply is simply run again.

One process applies to a replica at a time: a second 'replica apply' (or 'init') on it is
refused, naming the one that holds it. A 'ferry cutover' takes the replica over from a
follower, which waits meanwhile and goes on (or exits, once cut over) afterwards.

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
    const applier = await initReplica({
      repo,
      diskId,
      manifestId,
      replicaPath: replicaPath!,
      concurrency,
      signal,
      onProgress: bar.update,
      lock: { purpose: 'ferry replica init' },
    });
    await applier.close();
    bar.done();
    const state = applier.snapshot();
    if (values.json) print(JSON.stringify({ replica: replicaPath, ...state }));
    else print(`replica ${replicaPath}: disk ${state.diskId}, replication ${state.replication}, base ${state.manifestId}, replay from seq ${state.epoch}`);
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
  let applier: ReplicaApplier | undefined;
  try {
    const repo = await Repository.open(store);
    const follow = values.follow === true;
    const logger = new Logger(stderrSink, values.quiet ? 'warn' : 'info');
    applier = await ReplicaApplier.open(repo, replicaPath!, {
      lock: { purpose: follow ? 'ferry replica apply --follow' : 'ferry replica apply', yieldable: follow },
      logger,
    });
    const json = values.json === true;
    if (!follow) {
      const result = await applier.applyAvailable(signal);
      report(replicaPath!, applier.snapshot(), result.applied, json);
      return 0;
    }
    // The replica's lock is held from here: a cutover started now takes it over from us.
    const start = applier.snapshot();
    logger.info('following replica', { replica: replicaPath!, replication: start.replication, nextSeq: start.nextSeq });
    const cutOver = await applier.follow({
      signal,
      pollMs,
      onApplied: (result) => values.quiet || report(replicaPath!, applier!.snapshot(), result.applied, json),
      onRetry: (error, failures) => stderrSink('warn', 'applying deltas failed, will retry', { error: error.message, failures }),
    });
    if (cutOver) {
      const state = applier.snapshot();
      if (json) print(JSON.stringify({ replica: replicaPath, applied: 0, ...state }));
      else print(`replica ${replicaPath}: replication ${state.replication} was cut over at seq ${state.cutover!.finalSeq}; nothing more will come`);
    }
    return 0;
  } finally {
    await applier?.close();
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
