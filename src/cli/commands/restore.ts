import { formatBytes } from '../../core/index.js';
import { restoreDisk } from '../../migrate/index.js';
import { Repository } from '../../store/index.js';
import type { Command } from '../command.js';
import { intOption, parse, positionals, required, storeFromFlags, storeHelp, storeOptions } from '../options.js';
import { print, progressReporter } from '../terminal.js';

export const restoreCommand: Command = {
  name: 'restore',
  usage: `Usage: ferry restore --store URL --manifest ID DEST [options]

Rebuilds the disk described by manifest ID into DEST. Every chunk is verified before it is
written. A new DEST is built as DEST.ferry-partial (sparse: zero chunks stay holes) and
renamed when complete; re-run after an interruption, it continues. An existing DEST (a
block device, or an older replica) must have exactly the disk's size; chunks it already
holds are not rewritten.

Options:
  --manifest ID        manifest id (or a unique prefix of at least 4 hex digits)
  --concurrency N      downloads in flight (default 8)
  --json               print the result as JSON
  -q, --quiet          no progress bar
${storeHelp}`,
  async run(argv, signal) {
    const { values, positionals: args } = parse(argv, {
      ...storeOptions,
      manifest: { type: 'string' },
      concurrency: { type: 'string' },
    });
    const [destPath] = positionals(args, ['DEST']);
    const manifestId = required(values.manifest, '--manifest');
    const store = storeFromFlags(values);
    const bar = progressReporter('restore', values.quiet === true || values.json === true);
    try {
      const repo = await Repository.open(store);
      const result = await restoreDisk({
        repo,
        manifestId,
        destPath: destPath!,
        concurrency: intOption(values.concurrency, '--concurrency', 1, 256),
        signal,
        onProgress: bar.update,
      });
      bar.done();
      const s = result.stats;
      if (values.json) {
        print(JSON.stringify({ manifestId: result.manifestId, dest: destPath, ...s }));
      } else {
        print(
          `restored ${formatBytes(s.bytesTotal)} to ${destPath} in ${(s.elapsedMs / 1000).toFixed(1)} s: ` +
            `${s.chunksWritten} chunks written, ${s.chunksUnchanged} already there, ${s.chunksZero} zero`,
        );
      }
      return 0;
    } finally {
      bar.done();
      await store.close();
    }
  },
};
