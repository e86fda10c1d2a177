import { asFerryError, FerryError, FileDevice } from '../../core/index.js';
import { FilterControlClient } from '../../api/index.js';
import { cutoverDisk, hashDisk, ReplicaApplier, type CutoverSource, type DiskComparison } from '../../migrate/index.js';
import { Repository } from '../../store/index.js';
import type { Command } from '../command.js';
import { parse, required, storeFromFlags, storeHelp, storeOptions } from '../options.js';
import { print } from '../terminal.js';

export const cutoverCommand: Command = {
  name: 'cutover',
  usage: `Usage: ferry cutover --disk ID --control PATH --store URL --replica PATH [options]

The disk-level cutover, through a running 'ferry filter' (its control socket) and a
replica made by 'ferry replica init':
  1. applies the deltas already in the store (so the pause stays short);
  2. quiesces the source (new IO is held, IO in flight completes);
  3. has the filter seal and ship the final delta; applies it to the replica;
  4. verifies; prints how long the source was paused.
On success the source STAYS PAUSED: stop the source VM, then start the destination one.
On any failure the source is resumed and ferry exits non-zero, saying why.

Options:
  --disk ID            the disk's id at the filter (default: the replica's)
  --control PATH       the filter's control socket
  --replica PATH       the replica image (with its PATH.ferry-replica.json)
  --verify MODE        'deltas' (default): every delta's checksum and replay reaching the
                       final seq; 'full': also compare SHA-256 of the whole source and
                       replica (reads both disks while the source is paused)
  --json               print the result as JSON
${storeHelp}`,
  async run(argv, signal) {
    const { values, positionals: args } = parse(argv, {
      ...storeOptions,
      disk: { type: 'string' },
      control: { type: 'string' },
      replica: { type: 'string' },
      verify: { type: 'string' },
    });
    if (args.length > 0) throw new FerryError('bad-input', `unexpected arguments: ${JSON.stringify(args)}`);
    const controlPath = required(values.control, '--control');
    const replicaPath = required(values.replica, '--replica');
    const verify = values.verify ?? 'deltas';
    if (verify !== 'full' && verify !== 'deltas') throw new FerryError('bad-input', `--verify: expected "full" or "deltas", received ${JSON.stringify(verify)}`);
    const store = storeFromFlags(values);
    try {
      const repo = await Repository.open(store);
      const applier = await ReplicaApplier.open(repo, replicaPath);
      const replicaDisk = applier.snapshot().diskId;
      const diskId = values.disk ?? replicaDisk;
      if (diskId !== replicaDisk) throw new FerryError('bad-input', `--disk: the replica ${replicaPath} is of disk ${JSON.stringify(replicaDisk)}, received ${JSON.stringify(diskId)}`);

      const client = new FilterControlClient(controlPath);
      const before = await client.disk(diskId, { signal });
      if (before.quiesced) {
        throw new FerryError(
          'invalid-state',
          `disk ${diskId} is already quiesced at the filter (a cutover done or under way?); if the source must run again, POST /v1/disks/${diskId}/resume first`,
        );
      }
      // Catch up while the source still runs, so the pause stays short. Only an optimization:
      // what fails here fails again (and is reported) inside the cutover, which resumes the source.
      await applier.applyAvailable(signal).catch((err: unknown) => {
        if (signal.aborted) throw err;
        process.stderr.write(`warning: catching up before the pause failed: ${asFerryError(err).message}\n`);
      });

      let quiesceTried = false;
      let resumed = false;
      const remote = client.cutoverSource(diskId);
      const source: CutoverSource = {
        quiesce: async () => {
          quiesceTried = true;
          try {
            await remote.quiesce();
          } catch (err) {
            await remote.resume().catch(() => {}); // it may have taken effect before the error
            resumed = true;
            throw err;
          }
        },
        resume: async () => {
          await remote.resume();
          resumed = true;
        },
        drainFinal: remote.drainFinal,
      };
      const compare = async (sig?: AbortSignal): Promise<DiskComparison> => {
        const replica = await FileDevice.open(replicaPath, { readOnly: true });
        try {
          const [src, rep] = await Promise.all([client.hash(diskId, { signal: sig }), hashDisk(replica, sig)]);
          if (src.sizeBytes !== replica.sizeBytes) return { identical: false, reason: `sizes differ: source ${src.sizeBytes}, replica ${replica.sizeBytes} bytes` };
          return src.sha256 === rep ? { identical: true, sha256: [src.sha256, rep] } : { identical: false, sha256: [src.sha256, rep], reason: `SHA-256 differs: source ${src.sha256}, replica ${rep}` };
        } finally {
          await replica.close();
        }
      };

      let result;
      try {
        result = await cutoverDisk({ source, replica: applier, compare }, { verify, signal });
      } catch (err) {
        const error = asFerryError(err);
        if (!quiesceTried) throw error;
        const state = resumed ? 'the source was resumed' : 'the source may still be paused';
        throw new FerryError(error.code, `cutover of disk ${diskId} failed, ${state}: ${error.message}`, { cause: err });
      }
      if (values.json) {
        print(JSON.stringify({ disk: diskId, replica: replicaPath, ...result }));
      } else {
        print(
          `cutover of disk ${diskId} done: source paused ${result.pauseMs.toFixed(0)} ms ` +
            `(drain ${result.drainMs.toFixed(0)} ms, apply ${result.applyMs.toFixed(0)} ms, verify ${result.verifyMs.toFixed(0)} ms, ${result.verified}); final seq ${result.finalSeq}`,
        );
        process.stderr.write(`The source stays paused: stop the source VM, then start the destination from ${replicaPath}.\n`);
      }
      return 0;
    } finally {
      await store.close();
    }
  },
};
