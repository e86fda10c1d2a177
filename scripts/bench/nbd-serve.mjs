#!/usr/bin/env node
// Serves one raw image over ferry's NBD server on a unix socket, for benchmarks and manual
// tests. Uses the built server (run `npm run build` first):
//
//   node scripts/bench/nbd-serve.mjs --image disk.img --socket /tmp/nbd.sock [--name disk0]
//        [--read-only] [--hook ./capture-hook.mjs] [--verbose]
//
// --hook names an ES module whose default export is `async (device, { logger }) => BlockDevice`;
// its result is served instead of the disk. That is how a filter stack (e.g. the change
// tracker's capture filter, a BlockDevice decorator) is measured: "capture on" is
// `--hook` with a module returning `new CaptureFilter(disk, tracker)`.
//
// Prints "ready <socket>" on stdout once listening; stops cleanly on SIGTERM or SIGINT.
import { parseArgs } from 'node:util';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const root = new URL('../../', import.meta.url);
const { FileDevice, Logger } = await import(new URL('dist/core/index.js', root).href);
const { NbdServer } = await import(new URL('dist/nbd/index.js', root).href);

const { values } = parseArgs({
  options: {
    image: { type: 'string' },
    socket: { type: 'string' },
    name: { type: 'string', default: 'disk0' },
    'read-only': { type: 'boolean', default: false },
    hook: { type: 'string' },
    verbose: { type: 'boolean', default: false },
  },
});
if (!values.image || !values.socket) {
  process.stderr.write('usage: nbd-serve.mjs --image PATH --socket PATH [--name NAME] [--read-only] [--hook MODULE]\n');
  process.exit(2);
}

const logger = new Logger(
  (level, message, fields) => process.stderr.write(`${level} ${message} ${JSON.stringify(fields)}\n`),
  values.verbose ? 'debug' : 'warn',
);
const disk = await FileDevice.open(values.image, { readOnly: values['read-only'] });
let device = disk;
if (values.hook) {
  const hook = await import(pathToFileURL(resolve(values.hook)).href);
  device = await hook.default(disk, { logger });
}
const server = new NbdServer({ exports: new Map([[values.name, device]]), logger });
await server.listen({ path: values.socket });
process.stdout.write(`ready ${values.socket}\n`);

let stopping = false;
async function stop() {
  if (stopping) return;
  stopping = true;
  await server.close();
  if (device !== disk) await device.close();
  await disk.close();
  process.stderr.write(`stats ${JSON.stringify(server.stats())}\n`);
  process.exit(0);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
