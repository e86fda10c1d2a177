import { readFile, stat } from 'node:fs/promises';
import { isIP } from 'node:net';
import { resolve } from 'node:path';
import { badInput, FerryError } from '../../core/index.js';
import { hashToken, loadOrCreateTlsIdentity, loadTlsIdentity, serveOverTls } from '../../api/index.js';
import type { Command } from '../command.js';
import { parse, storeHelp } from '../options.js';
import { filterOptions, filterOptionsHelp, runFilter, type FilterAddOn } from './filter.js';

const minTokenLength = 16;

export const agentCommand: Command = {
  name: 'agent',
  usage: `Usage: ferry agent [--disk ID=PATH ...] --state-dir DIR [--store URL] [--listen HOST:PORT --token-file FILE] [options]

Runs the long-lived agent of a hypervisor host. As a source it does everything 'ferry
filter' does for its --disk disks (NBD exports, capture, shipping; --store is needed with
disks). As a destination it follows replicas: POST /v1/replicas on its control API
restores a base and applies the replication's deltas as they come, as 'ferry replica apply
--follow' does, until the replication is cut over; the list is kept in
<state-dir>/replicas.json and followed again after a restart. It may run with no disks.
The control API is on a local unix socket, and with --listen over TCP with TLS, for the
migration service on another host. Every request there but GET /healthz needs
"Authorization: Bearer <token>", the token read from --token-file (only its SHA-256 is
kept; it is never logged).

The TLS certificate is --tls-cert/--tls-key, or else generated on the first start into
<state-dir>/agent-cert.pem and agent-key.pem (EC P-256, self-signed, ten years; needs the
openssl command) and reused afterwards. Once running it prints, one per line, 'export ID
URI' for each disk, 'control PATH', 'agent https://HOST:PORT' and 'fingerprint sha256:HEX':
clients pin the certificate by that fingerprint. SIGTERM or SIGINT stops it as a filter.

Options:
${filterOptionsHelp}
  --listen HOST:PORT   serve the control API over TLS there ([::]:PORT for IPv6; port 0: any free port)
  --token-file FILE    the bearer token (required with --listen); only its owner may read it (chmod 600)
  --tls-cert FILE      the certificate (PEM); with --tls-key
  --tls-key FILE       its private key (PEM)
  --vm NAME=DISK[,...] a VM of this host and its disks (repeatable), for the inventory the
                       service reads (GET /v1/inventory); a disk of no VM is listed as its own VM
  --json               print the exports, control socket, agent address and fingerprint as one JSON line
  -q, --quiet          log warnings and errors only
${storeHelp}`,
  async run(argv, signal) {
    const { values, positionals } = parse(argv, {
      ...filterOptions,
      listen: { type: 'string' },
      'token-file': { type: 'string' },
      'tls-cert': { type: 'string' },
      'tls-key': { type: 'string' },
      vm: { type: 'string', multiple: true },
    });
    const vms = (values.vm ?? []).map(parseVm);
    const listen = values.listen === undefined ? undefined : parseListen(values.listen);
    const tokenFile = values['token-file'];
    const certFile = values['tls-cert'];
    const keyFile = values['tls-key'];
    if (!listen) {
      for (const [flag, value] of [['--token-file', tokenFile], ['--tls-cert', certFile], ['--tls-key', keyFile]] as const) {
        if (value !== undefined) throw new FerryError('bad-input', `${flag} goes with --listen HOST:PORT, which is not given`);
      }
      return runFilter('agent', values, positionals, signal, { vms });
    }
    if (tokenFile === undefined) throw new FerryError('bad-input', '--token-file is required with --listen: the bearer token clients must send');
    if ((certFile === undefined) !== (keyFile === undefined)) throw new FerryError('bad-input', '--tls-cert and --tls-key go together (or give neither: a certificate is generated in the state dir)');
    const tokenHash = hashToken(await readToken(resolve(tokenFile)));

    const addOn: FilterAddOn = {
      async start({ control, stateDir, logger }) {
        const identity = certFile && keyFile ? await loadTlsIdentity(resolve(certFile), resolve(keyFile)) : await loadOrCreateTlsIdentity(stateDir, { logger });
        const server = await serveOverTls(control, {
          host: listen.host,
          port: listen.port,
          cert: identity.cert,
          key: identity.key,
          tokenHash,
          logger: logger.child({ component: 'agent' }),
        });
        return {
          lines: [
            ['agent', server.url],
            ['fingerprint', identity.fingerprint],
          ],
          close: () => server.close(),
        };
      },
    };
    return runFilter('agent', values, positionals, signal, { addOn, vms });
  },
};

/** NAME=DISK[,DISK...]: a VM of this host and its disks, for the inventory. */
export function parseVm(value: string): { name: string; disks: string[] } {
  const match = /^([A-Za-z0-9][A-Za-z0-9._-]{0,63})=([A-Za-z0-9][A-Za-z0-9._-]*(?:,[A-Za-z0-9][A-Za-z0-9._-]*)*)$/.exec(value);
  if (!match) throw badInput('--vm', value, 'NAME=DISK[,DISK...], e.g. db=db-root,db-data');
  return { name: match[1]!, disks: match[2]!.split(',') };
}

/** HOST:PORT, [IPv6]:PORT. */
function parseListen(value: string): { host: string; port: number } {
  const match = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]\s]+)):(\d{1,5})$/.exec(value);
  const host = match?.[1] ?? match?.[2];
  const port = Number(match?.[3]);
  if (!match || !host || port > 65535 || (match[1] !== undefined && isIP(match[1]) !== 6)) {
    throw badInput('--listen', value, 'HOST:PORT, e.g. 0.0.0.0:7443, [::]:7443 or 127.0.0.1:0');
  }
  return { host, port };
}

/**
 * The bearer token: the file's contents without surrounding whitespace. A file that group or
 * others may access is refused, as ssh refuses such a key.
 */
async function readToken(path: string): Promise<string> {
  const info = await stat(path).catch((err: NodeJS.ErrnoException) => {
    throw new FerryError(err.code === 'ENOENT' ? 'not-found' : 'io', `--token-file ${path}: ${err.code === 'ENOENT' ? 'no such file' : err.message}`, { cause: err });
  });
  if (!info.isFile()) throw new FerryError('bad-input', `--token-file ${path}: not a regular file`);
  const mode = info.mode & 0o777;
  if (mode & 0o077) {
    throw new FerryError('bad-input', `--token-file ${path} has mode ${mode.toString(8).padStart(4, '0')}: group or others may access it; only its owner may (chmod 600 ${path})`);
  }
  const token = (await readFile(path, 'utf8')).trim();
  if (token.length < minTokenLength || !/^[\x21-\x7e]+$/.test(token)) {
    // The token itself is not shown: the file is secret.
    throw new FerryError('bad-input', `--token-file ${path}: expected one token of at least ${minTokenLength} printable ASCII characters without spaces (e.g. openssl rand -hex 32 > ${path}), found ${token.length === 0 ? 'an empty file' : 'something else'}`);
  }
  return token;
}
