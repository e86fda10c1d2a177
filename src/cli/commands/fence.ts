import { badInput } from '../../core/index.js';
import { FilterControlClient } from '../../api/index.js';
import type { Command } from '../command.js';
import { parse, required } from '../options.js';
import { print } from '../terminal.js';

export const fenceCommand: Command = {
  name: 'fence',
  usage: `Usage: ferry fence release --control PATH --disk ID [--reason TEXT]

After a cutover the filter fences the source disk: it refuses the disk's IO, also after a
restart, so the source VM can never run beside the destination. 'fence release' lifts
that on purpose, e.g. to fail back: the disk serves IO again as a NEW replication (the
cut-over one is finished; a replica of it follows nothing more). Only do this once the
destination VM is stopped, or its data no longer matters.

Options:
  --control PATH       the filter's control socket
  --disk ID            the fenced disk
  --reason TEXT        why, for the filter's log (default "operator request")
  --json               print the result as JSON`,
  async run(argv, signal) {
    const { values, positionals: args } = parse(argv, { control: { type: 'string' }, disk: { type: 'string' }, reason: { type: 'string' } });
    const [sub, ...rest] = args;
    if (sub !== 'release') throw badInput('subcommand', sub, '"release"');
    if (rest.length > 0) throw badInput('arguments', rest, 'none');
    const diskId = required(values.disk, '--disk');
    const client = new FilterControlClient(required(values.control, '--control'));
    const replication = await client.releaseFence(diskId, values.reason, { signal });
    if (values.json) print(JSON.stringify({ disk: diskId, fenced: false, replication }));
    else print(`disk ${diskId} is released: it serves IO again, as the new replication ${replication} (a replica needs a new base copy or seed)`);
    return 0;
  },
};
