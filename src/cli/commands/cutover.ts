import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { asFerryError, FerryError } from '../../core/index.js';
import { FilterControlClient } from '../../api/index.js';
import { cutoverDisk } from '../../cutover/index.js';
import { fenceMessage, ReplicaApplier } from '../../delta/index.js';
import { defaultQuiesceLeaseMs } from '../../migrate/index.js';
import { Repository } from '../../store/index.js';
import type { Command } from '../command.js';
import { durationOption, parse, required, storeFromFlags, storeHelp, storeOptions } from '../options.js';
import { print } from '../terminal.js';
import { planUsage, runPlanCommand } from './cutover-plan.js';

export const cutoverCommand: Command = {
  name: 'cutover',
  usage: `${planUsage}

The cutover of one disk (ferry cutover --disk ...), through a running 'ferry filter' (its
control socket) and a replica made by 'ferry replica init':
  1. takes the replica (a 'ferry replica apply --follow' on it hands it over, and takes it
     back afterwards) and applies the deltas already in the store;
  2. quiesces the source (new IO is held, IO in flight completes), under a lease it renews
     while it works: if this command dies, the source resumes when the lease runs out;
  3. has the filter seal and ship the final delta; applies it to the replica; verifies;
  4. commits: the filter FENCES the source (refuses its IO from now on, also after a
     restart) and the store marks the replication cut over; prints how long it took.
On success start the destination VM from the replica; the source VM can only be stopped.
On any failure before the commit the source is resumed and ferry exits non-zero, saying
why. A disk another cutover holds is refused (exit 8); so is one already cut over.

Options:
  --disk ID            the disk's id at the filter (default: the replica's)
  --control PATH       the filter's control socket
  --replica PATH       the replica image (with its PATH.ferry-replica.json)
  --verify MODE        'deltas' (default): every delta's checksum and replay reaching the
                       final seq; 'full': also compare SHA-256 of the whole source and
                       replica (reads both disks while the source is paused)
  --lease DURATION     how long the quiesce holds without a renewal (default ${defaultQuiesceLeaseMs / 1000}s; renewed
                       every third of it)
  --json               print the result as JSON
${storeHelp}`,
  async run(argv, signal) {
    if (argv.includes('--plan') || ['status', 'go', 'cancel', 'resume', 'list'].includes(argv[0] ?? '')) return runPlanCommand(argv, signal);
    const { values, positionals: args } = parse(argv, {
      ...storeOptions,
      disk: { type: 'string' },
      control: { type: 'string' },
      replica: { type: 'string' },
      verify: { type: 'string' },
      lease: { type: 'string' },
    });
    if (args.length > 0) throw new FerryError('bad-input', `unexpected arguments: ${JSON.stringify(args)}`);
    const controlPath = required(values.control, '--control');
    const replicaPath = required(values.replica, '--replica');
    const verify = values.verify ?? 'deltas';
    if (verify !== 'full' && verify !== 'deltas') throw new FerryError('bad-input', `--verify: expected "full" or "deltas", received ${JSON.stringify(verify)}`);
    const leaseMs = durationOption(values.lease, '--lease', 1000, 600_000);
    const store = storeFromFlags(values);
    let applier: ReplicaApplier | undefined;
    try {
      const repo = await Repository.open(store);
      applier = await ReplicaApplier.open(repo, replicaPath, { lock: { purpose: 'ferry cutover', takeOver: true, signal } });
      const { diskId: replicaDisk, replication, cutover } = applier.snapshot();
      const diskId = values.disk ?? replicaDisk;
      if (diskId !== replicaDisk) throw new FerryError('bad-input', `--disk: the replica ${replicaPath} is of disk ${JSON.stringify(replicaDisk)}, received ${JSON.stringify(diskId)}`);
      if (cutover) throw new FerryError('invalid-state', `replica ${replicaPath} is already cut over (final seq ${cutover.finalSeq}, at ${cutover.at})`);

      const client = new FilterControlClient(controlPath);
      const before = await client.disk(diskId, { signal });
      if (before.fence) throw new FerryError('invalid-state', fenceMessage(before.fence));
      if (before.tracker.replication !== replication) {
        throw new FerryError(
          'conflict',
          `disk ${diskId} at the filter is replication ${before.tracker.replication}, but replica ${replicaPath} follows replication ${replication}: build the replica from a base copy or seed of this one`,
        );
      }
      // Catch up while the source still runs, so the pause stays short. Only an optimization:
      // what fails here fails again (and is reported) inside the cutover, which resumes the source.
      await applier.applyAvailable(signal).catch((err: unknown) => {
        if (signal.aborted) throw err;
        process.stderr.write(`warning: catching up before the pause failed: ${asFerryError(err).message}\n`);
      });

      const owner = `ferry cutover on ${hostname()}, pid ${process.pid}, ${randomBytes(3).toString('hex')}`;
      const source = client.cutoverSource(diskId, owner, leaseMs);

      let result;
      try {
        result = await cutoverDisk({ source, replica: applier }, { verify, signal });
      } catch (err) {
        const error = asFerryError(err);
        throw new FerryError(error.code, `disk ${diskId}: ${error.message}`, { cause: err });
      }
      for (const warning of result.warnings) process.stderr.write(`warning: ${warning}\n`);
      if (values.json) {
        print(JSON.stringify({ disk: diskId, replica: replicaPath, replication, ...result }));
      } else {
        print(
          `cutover of disk ${diskId} done: source paused ${result.pauseMs.toFixed(0)} ms ` +
            `(drain ${result.drainMs.toFixed(0)} ms, apply ${result.applyMs.toFixed(0)} ms, verify ${result.verifyMs.toFixed(0)} ms, ${result.verified}, ` +
            `fence ${result.commitMs.toFixed(0)} ms); final seq ${result.finalSeq}`,
        );
        process.stderr.write(`The source is fenced (its IO is refused): stop the source VM, then start the destination from ${replicaPath}.\n`);
      }
      return 0;
    } finally {
      await applier?.close();
      await store.close();
    }
  },
};
