import { basename } from 'node:path';
import { FileDevice, formatBytes, formatRate } from '../../core/index.js';
import { copyDisk, Throttle } from '../../migrate/index.js';
import { Repository } from '../../store/index.js';
import type { Command } from '../command.js';
import { intOption, parse, positionals, rateOption, sizeOption, storeFromFlags, storeHelp, storeOptions } from '../options.js';
import { print, progressReporter } from '../terminal.js';

export const copyCommand: Command = {
  name: 'copy',
  usage: `Usage: ferry copy DISK --store URL [options]

Copies DISK (a raw image or block device) chunk by chunk into the store: all-zero chunks
are skipped, chunks the store already has are not uploaded again, and the manifest is
written last. Re-run after an interruption, it continues where it stopped.

Options:
  --name NAME          disk name recorded in the manifest (default: the file name)
  --chunk-size SIZE    chunk size for a new store, e.g. 4M (default: the store's, 4M)
  --concurrency N      uploads in flight (default 8)
  --rate RATE          cap the upload rate, e.g. 50M/s, 200Mbit/s (default: unlimited)
  --json               print the result as JSON
  -q, --quiet          no progress bar
${storeHelp}`,
  async run(argv, signal) {
    const { values, positionals: args } = parse(argv, {
      ...storeOptions,
      name: { type: 'string' },
      'chunk-size': { type: 'string' },
      concurrency: { type: 'string' },
      rate: { type: 'string' },
    });
    const [diskPath] = positionals(args, ['DISK']);
    const store = storeFromFlags(values);
    const throttle = new Throttle(rateOption(values.rate, '--rate') ?? 0);
    const disk = await FileDevice.open(diskPath!, { readOnly: true });
    const bar = progressReporter('copy', values.quiet === true || values.json === true);
    try {
      const repo = await Repository.openOrInit(store, sizeOption(values['chunk-size'], '--chunk-size'));
      const result = await copyDisk({
        repo,
        disk,
        diskName: values.name ?? basename(diskPath!),
        concurrency: intOption(values.concurrency, '--concurrency', 1, 256),
        throttle,
        signal,
        onProgress: bar.update,
      });
      bar.done();
      const s = result.stats;
      if (values.json) {
        print(JSON.stringify({ manifestId: result.manifestId, store: store.location, ...s }));
      } else {
        const rate = s.elapsedMs > 0 ? (s.bytesTotal * 1000) / s.elapsedMs : 0;
        process.stderr.write(
          `read ${formatBytes(s.bytesTotal)} in ${(s.elapsedMs / 1000).toFixed(1)} s (${formatRate(rate)}): ` +
            `${s.chunksUploaded} chunks uploaded (${formatBytes(s.bytesUploaded)}), ${s.chunksDeduplicated} deduplicated, ${s.chunksZero} zero\n`,
        );
        print(result.manifestId);
      }
      return 0;
    } finally {
      bar.done();
      await disk.close();
      await throttle.close();
      await store.close();
    }
  },
};
