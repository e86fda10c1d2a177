import { FerryError, errorCodes, formatBytes, formatRate, progressOf, type ErrorCode } from '../../core/index.js';
import { FilterControlClient } from '../../api/index.js';
import type { BaseCopyStatus } from '../../migrate/index.js';
import type { Command } from '../command.js';
import { intOption, parse, required } from '../options.js';
import { print, progressReporter } from '../terminal.js';

const pollMs = 250;

export const baseCopyCommand: Command = {
  name: 'base-copy',
  usage: `Usage: ferry base-copy --control PATH --disk ID [options]

Asks a running 'ferry filter' to copy disk ID's existing data into its store while the VM
keeps running (capture is already on; the copy's epoch is the journal seq when it began),
follows its progress, and prints the manifest id to give 'ferry replica init'.
Interrupting this command does not stop the copy; run it again to follow it.

Options:
  --control PATH       the filter's control socket
  --disk ID            the disk to copy
  --concurrency N      chunks in flight (default 8)
  --json               print the final status as JSON
  -q, --quiet          no progress bar`,
  async run(argv, signal) {
    const { values } = parse(argv, { control: { type: 'string' }, disk: { type: 'string' }, concurrency: { type: 'string' } });
    const client = new FilterControlClient(required(values.control, '--control'));
    const diskId = required(values.disk, '--disk');
    const existing = (await client.disk(diskId, { signal })).baseCopy;
    let status: BaseCopyStatus =
      existing?.state === 'running' ? existing : await client.startBaseCopy(diskId, { concurrency: intOption(values.concurrency, '--concurrency', 1, 256) }, { signal });
    const bar = progressReporter('base copy', values.quiet === true || values.json === true);
    try {
      while (status.state === 'running') {
        bar.update(progressOf(status));
        await new Promise((resolve) => setTimeout(resolve, pollMs));
        status = await client.baseCopy(diskId, { signal });
      }
    } finally {
      bar.done();
    }
    if (status.state === 'failed') {
      const code = errorCodes.find((c): c is ErrorCode => c === status.error?.code) ?? 'internal';
      throw new FerryError(code, `base copy of ${diskId} failed: ${status.error?.message ?? 'no reason given'}`);
    }
    if (values.json) {
      print(JSON.stringify(status));
    } else {
      process.stderr.write(`base copy of ${diskId}: ${formatBytes(status.bytesTotal)} at ${formatRate(status.rateBytesPerSec)}, epoch ${status.epoch}\n`);
      print(status.manifestId ?? '');
    }
    return 0;
  },
};
