import { FileDevice } from '../../core/index.js';
import { compareDisks, verifyDiskAgainstManifest, type DiskComparison } from '../../migrate/index.js';
import { Repository } from '../../store/index.js';
import type { Command } from '../command.js';
import { exitCodes } from '../exit-codes.js';
import { parse, storeFromFlags, storeHelp, storeOptions } from '../options.js';
import { print, progressReporter } from '../terminal.js';
import { FerryError } from '../../core/index.js';

export const verifyCommand: Command = {
  name: 'verify',
  usage: `Usage: ferry verify DISK_A DISK_B
       ferry verify DISK --store URL --manifest ID

Exits 0 when identical, 1 when they differ (and says where).

Options:
  --manifest ID        compare DISK against this manifest (needs --store)
  --json               print the result as JSON
  -q, --quiet          no progress bar
${storeHelp}`,
  async run(argv, signal) {
    const { values, positionals: args } = parse(argv, { ...storeOptions, manifest: { type: 'string' } });
    const bar = progressReporter('verify', values.quiet === true || values.json === true);
    let result: DiskComparison;
    if (values.manifest !== undefined) {
      if (args.length !== 1) throw new FerryError('bad-input', `with --manifest, expected one DISK, received ${args.length} arguments`);
      const store = storeFromFlags(values);
      const disk = await FileDevice.open(args[0]!, { readOnly: true });
      try {
        const { manifest } = await (await Repository.open(store)).getManifest(values.manifest, signal);
        result = await verifyDiskAgainstManifest(disk, manifest, { signal, onProgress: bar.update });
      } finally {
        await disk.close();
        await store.close();
      }
    } else {
      if (args.length !== 2) throw new FerryError('bad-input', `expected DISK_A DISK_B, received ${args.length} arguments`);
      const [a, b] = await Promise.all(args.map((path) => FileDevice.open(path, { readOnly: true })));
      try {
        result = await compareDisks(a!, b!, { signal, onProgress: bar.update });
      } finally {
        await a!.close();
        await b!.close();
      }
    }
    bar.done();
    if (values.json) print(JSON.stringify(result));
    else print(result.identical ? `identical${result.sha256 ? ` (sha256 ${result.sha256[0]})` : ''}` : `DIFFERENT: ${result.reason}`);
    return result.identical ? exitCodes.ok : exitCodes.different;
  },
};
