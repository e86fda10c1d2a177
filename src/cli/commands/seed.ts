import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { FerryError, FileDevice, errorCodes, formatBytes, formatRate, progressOf, type ErrorCode } from '../../core/index.js';
import { Repository } from '../../store/index.js';
import { exportSeed, importSeed, repairSeed, verifySeed, type SeedDisk, type SeedKey } from '../../seed/index.js';
import type { Command } from '../command.js';
import { exitCodes } from '../exit-codes.js';
import { intOption, parse, positionals, required, sizeOption, storeFromFlags, storeHelp, storeOptions } from '../options.js';
import { print, progressReporter } from '../terminal.js';

const ferryVersion = '0.1.0';

const usage = `Usage: ferry seed export --disk ID=PATH [--disk ID=PATH ...] --device DIR [options]
       ferry seed export --control PATH [--disk ID ...] --device DIR [options]
       ferry seed verify DEVICE [--key-file F | --passphrase-file F]
       ferry seed import DEVICE --store URL [--repair-from URL] [--key-file F | --passphrase-file F]
       ferry seed repair DEVICE --store URL --from URL

Offline seeding: the disks' data travels on a portable device (a directory on a USB or
NAS disk); only what changed since the seed began goes over the network.

export   writes the disks' non-zero chunks into tar volumes of at most --volume-size on
         DIR, then DIR/seed.json (written last: without it the export is unfinished).
         Re-run with the same disks after an interruption, it continues where it stopped;
         a DIR holding another seed is refused (exit 8). With --disk ID=PATH the disks are
         read as files and must not change meanwhile (disks not in use, or snapshots).
         With --control, the running 'ferry filter' exports the disks it serves (all, or
         each --disk ID) while the VMs keep running: it first parks each disk in bitmap
         mode and records its epoch; once the seed is imported at the destination, switch
         each disk back to streaming (PUT /v1/disks/ID/mode) to ship what changed since.
verify   checks DEVICE alone: seed.json, every volume's size and SHA-256, every entry,
         and every chunk's SHA-256 (encrypted seeds: only with the key). Exit 0 if all is
         well, 4 if anything is damaged or missing (listed).
import   copies the chunks, each verified, into the store (chunks it has are skipped; a
         re-run continues), then writes the disks' manifests and prints their ids. If
         chunks are corrupt or missing, the others are stored, the missing ones listed, no
         manifest is written and the exit code is 4; fetch them with --repair-from (a store
         at the source holding the disks' chunks) or later with 'ferry seed repair'.
repair   copies the chunks the destination store lacks from the source store (verified),
         then writes the manifests. Needs only DEVICE/seed.json. Exit 3 if chunks are in
         neither store.

Options:
  --disk ID=PATH          a disk to export: its id (names its deltas) and its image
                          (with --control: just ID, a disk the filter serves)
  --control PATH          export live disks through this filter's control socket
  --device DIR            the seed device's directory (created if missing)
  --volume-size SIZE      largest tar volume, e.g. 1G (default), 4G, 500M
  --chunk-size SIZE       chunk size, e.g. 4M (default); the destination store's chunk size
  --seed-id ID            continue (or confirm) this seed only
  --key-file F            encrypt / decrypt chunks with a key derived from this file
                          (at least 16 bytes, e.g. head -c 32 /dev/urandom > F)
  --passphrase-file F     ... or from the passphrase in F (scrypt); the key never goes
                          on the device, only its fingerprint
  --repair-from URL       (import) a store at the source to fetch missing chunks from
  --from URL              (repair) the store at the source
  --concurrency N         chunks stored at once (import: default 8, repair: 4)
  --json                  print the result as JSON
  -q, --quiet             no progress bar
${storeHelp}`;

export const seedCommand: Command = {
  name: 'seed',
  usage,
  async run(argv, signal) {
    const [sub, ...rest] = argv;
    switch (sub) {
      case 'export':
        return seedExport(rest, signal);
      case 'verify':
        return seedVerify(rest, signal);
      case 'import':
        return seedImport(rest, signal);
      case 'repair':
        return seedRepair(rest, signal);
      default:
        throw new FerryError('bad-input', `seed: expected a subcommand (export, verify, import, repair), received ${sub === undefined ? 'nothing' : JSON.stringify(sub)}`);
    }
  },
};

const keyOptions = { 'key-file': { type: 'string' }, 'passphrase-file': { type: 'string' } } as const;

async function keyFromFlags(values: { 'key-file'?: string; 'passphrase-file'?: string }): Promise<SeedKey | undefined> {
  const keyFile = values['key-file'];
  const passphraseFile = values['passphrase-file'];
  if (keyFile !== undefined && passphraseFile !== undefined) throw new FerryError('bad-input', '--key-file and --passphrase-file: give one of them, not both');
  const load = async (path: string, flag: string) => {
    try {
      return await readFile(path);
    } catch (err) {
      throw new FerryError('bad-input', `${flag}: cannot read ${JSON.stringify(path)}: ${(err as Error).message}`, { cause: err });
    }
  };
  if (keyFile !== undefined) return { keyFile: await load(keyFile, '--key-file') };
  if (passphraseFile !== undefined) return { passphrase: (await load(passphraseFile, '--passphrase-file')).toString('utf8').replace(/\r?\n$/, '') };
  return undefined;
}

async function seedExport(argv: string[], signal: AbortSignal): Promise<number> {
  const { values, positionals: args } = parse(argv, {
    disk: { type: 'string', multiple: true },
    device: { type: 'string' },
    'volume-size': { type: 'string' },
    'chunk-size': { type: 'string' },
    'seed-id': { type: 'string' },
    control: { type: 'string' },
    ...keyOptions,
  });
  positionals(args, []);
  const deviceDir = required(values.device, '--device');
  if (values.control !== undefined) return seedExportLive(values.control, values, signal);
  const specs = values.disk ?? [];
  if (specs.length === 0) throw new FerryError('bad-input', '--disk is required (ID=PATH, once per disk)');
  const key = await keyFromFlags(values);
  const disks: SeedDisk[] = [];
  const bar = progressReporter('seed export', values.quiet === true || values.json === true);
  try {
    for (const spec of specs) {
      const cut = spec.indexOf('=');
      if (cut <= 0 || cut === spec.length - 1) throw new FerryError('bad-input', `--disk: expected ID=PATH, received ${JSON.stringify(spec)}`);
      const device = await FileDevice.open(spec.slice(cut + 1), { readOnly: true });
      disks.push({ id: spec.slice(0, cut), device, epoch: 0 });
    }
    const result = await exportSeed({
      deviceDir,
      disks,
      chunkSizeBytes: sizeOption(values['chunk-size'], '--chunk-size'),
      volumeSizeBytes: sizeOption(values['volume-size'], '--volume-size'),
      seedId: values['seed-id'],
      key,
      ferryVersion,
      signal,
      onProgress: bar.update,
    });
    bar.done();
    const s = result.stats;
    if (values.json) {
      print(JSON.stringify({ seedId: result.manifest.seedId, resumed: result.resumed, alreadyComplete: result.alreadyComplete, volumeCount: result.manifest.volumes.length, disks: result.manifest.disks.map((d) => ({ id: d.id, manifestId: d.manifestId })), ...s }));
    } else {
      if (result.alreadyComplete) process.stderr.write(`${deviceDir} already holds seed ${result.manifest.seedId}, complete\n`);
      else {
        const rate = s.elapsedMs > 0 ? (s.bytesRead * 1000) / s.elapsedMs : 0;
        process.stderr.write(
          `${result.resumed ? 'resumed; ' : ''}read ${formatBytes(s.bytesRead)} in ${(s.elapsedMs / 1000).toFixed(1)} s (${formatRate(rate)}): ` +
            `${s.chunksStored} chunks stored, ${s.chunksDeduplicated} repeated, ${s.chunksZero} zero; ${result.manifest.volumes.length} volumes\n`,
        );
      }
      print(result.manifest.seedId);
    }
    return exitCodes.ok;
  } finally {
    bar.done();
    await Promise.all(disks.map((d) => d.device.close()));
  }
}

/**
 * Live export through a running `ferry filter`: the filter parks the disks (bitmap mode from
 * the seed's epoch, no resync while the seed travels) and reads them while the VMs run.
 */
async function seedExportLive(
  control: string,
  values: { disk?: string[]; device?: string; 'volume-size'?: string; 'key-file'?: string; 'passphrase-file'?: string; quiet?: boolean; json?: boolean },
  signal: AbortSignal,
): Promise<number> {
  const deviceDir = resolve(required(values.device, '--device'));
  const key = await keyFromFlags(values);
  // Loaded here: an offline export should not pay for the HTTP client's modules.
  const { FilterControlClient } = await import('../../api/index.js');
  const client = new FilterControlClient(control);
  let status = await client.startSeedExport(
    {
      device: deviceDir,
      disks: values.disk?.length ? values.disk : undefined,
      volumeSizeBytes: sizeOption(values['volume-size'], '--volume-size'),
      key: key === undefined ? undefined : 'passphrase' in key ? { passphrase: key.passphrase } : { keyFileBase64: Buffer.from(key.keyFile).toString('base64') },
    },
    { signal },
  );
  const bar = progressReporter('seed export', values.quiet === true || values.json === true);
  try {
    while (status.state === 'running') {
      bar.update(progressOf(status));
      await new Promise((r) => setTimeout(r, 250));
      status = await client.seedExport({ signal });
    }
  } finally {
    bar.done();
  }
  if (status.state === 'failed') {
    const code = errorCodes.find((c): c is ErrorCode => c === status.error?.code) ?? 'internal';
    throw new FerryError(code, `seed export failed: ${status.error?.message ?? 'no reason given'}`);
  }
  if (values.json) print(JSON.stringify(status));
  else {
    process.stderr.write(`seed of ${status.disks.join(', ')} on ${deviceDir}: ${status.volumes} volumes. The disks stay in bitmap mode until 'PUT /v1/disks/ID/mode streaming' after the import.\n`);
    print(status.seedId ?? '');
  }
  return exitCodes.ok;
}

async function seedVerify(argv: string[], signal: AbortSignal): Promise<number> {
  const { values, positionals: args } = parse(argv, keyOptions);
  const [deviceDir] = positionals(args, ['DEVICE']);
  const bar = progressReporter('seed verify', values.quiet === true || values.json === true);
  const report = await verifySeed({ deviceDir: deviceDir!, key: await keyFromFlags(values), signal, onProgress: bar.update });
  bar.done();
  if (values.json) {
    print(JSON.stringify(report));
  } else {
    for (const v of report.volumes) print(`${v.ok ? 'ok     ' : 'BAD    '} ${v.name}${v.problem ? `: ${v.problem}` : ''}`);
    for (const c of report.corrupt) print(`CORRUPT ${c.reason}`);
    if (report.missing.length > 0) print(`MISSING ${report.missing.length} chunks named by the disks are on no intact volume: ${report.missing.slice(0, 5).join(', ')}${report.missing.length > 5 ? ', ...' : ''}`);
    if (report.chunksUnchecked > 0) print(`note: ${report.chunksUnchecked} encrypted chunks not checked: give the key to check them`);
    print(`${report.ok ? 'seed ok' : 'seed DAMAGED'}: ${report.seedId}, ${report.disks.length} disks, ${report.volumes.length} volumes, ${report.chunksChecked} chunks checked`);
  }
  return report.ok ? exitCodes.ok : exitCodes['checksum-mismatch'];
}

async function seedImport(argv: string[], signal: AbortSignal): Promise<number> {
  const { values, positionals: args } = parse(argv, { ...storeOptions, ...keyOptions, 'repair-from': { type: 'string' }, concurrency: { type: 'string' } });
  const [deviceDir] = positionals(args, ['DEVICE']);
  const key = await keyFromFlags(values);
  const store = storeFromFlags(values);
  const source = values['repair-from'] !== undefined ? storeFromFlags({ ...values, store: values['repair-from'] }) : undefined;
  const bar = progressReporter('seed import', values.quiet === true || values.json === true);
  try {
    const repo = await Repository.openOrInit(store);
    const report = await importSeed({
      deviceDir: deviceDir!,
      repo,
      key,
      repairFrom: source ? await Repository.open(source) : undefined,
      concurrency: intOption(values.concurrency, '--concurrency', 1, 64),
      signal,
      onProgress: bar.update,
    });
    bar.done();
    if (values.json) {
      print(JSON.stringify(report));
    } else {
      for (const v of report.volumes) if (!v.ok) process.stderr.write(`BAD     ${v.problem}\n`);
      for (const c of report.corrupt) process.stderr.write(`CORRUPT ${c.reason}\n`);
      process.stderr.write(
        `seed ${report.seedId}: ${report.imported} chunks imported (${formatBytes(report.bytesImported)}), ${report.skipped} already in ${report.store}, ` +
          `${report.repaired} repaired, ${report.corrupt.length} corrupt, ${report.missing.length} missing\n`,
      );
      if (report.complete) for (const m of report.manifests) print(`${m.diskId} ${m.manifestId} epoch ${m.epoch}`);
      else if (report.tampered.length > 0) {
        process.stderr.write(`no manifest written: ${report.tampered.join(', ')} changed after the export (tampered); bring an untouched copy of the device, or export it again\n`);
      } else {
        for (const hash of report.missing) print(`missing ${hash}`);
        process.stderr.write(`no manifest written: fetch the missing chunks with 'ferry seed repair ${deviceDir} --store ${store.location} --from SOURCE_STORE'\n`);
      }
    }
    return report.complete ? exitCodes.ok : exitCodes['checksum-mismatch'];
  } finally {
    bar.done();
    await store.close();
    await source?.close();
  }
}

async function seedRepair(argv: string[], signal: AbortSignal): Promise<number> {
  const { values, positionals: args } = parse(argv, { ...storeOptions, from: { type: 'string' }, concurrency: { type: 'string' } });
  const [deviceDir] = positionals(args, ['DEVICE']);
  const store = storeFromFlags(values);
  const source = storeFromFlags({ ...values, store: required(values.from, '--from') });
  try {
    const report = await repairSeed({
      deviceDir: deviceDir!,
      repo: await Repository.openOrInit(store),
      from: await Repository.open(source),
      concurrency: intOption(values.concurrency, '--concurrency', 1, 64),
      signal,
    });
    if (values.json) print(JSON.stringify(report));
    else {
      process.stderr.write(`seed ${report.seedId}: ${report.repaired} chunks fetched from ${source.location}, ${report.missing.length} in neither store\n`);
      if (report.complete) for (const m of report.manifests) print(`${m.diskId} ${m.manifestId} epoch ${m.epoch}`);
      else for (const hash of report.missing) print(`missing ${hash}`);
    }
    return report.complete ? exitCodes.ok : exitCodes['not-found'];
  } finally {
    await store.close();
    await source.close();
  }
}
