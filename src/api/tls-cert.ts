/**
 * The TLS identity of an agent's control API: a certificate and its private key, given by
 * the operator or generated once into the state directory and reused on every later start.
 * Clients pin the certificate by its SHA-256 fingerprint (printed at start), not by a CA, so
 * a self-signed certificate is enough and its names are informative only.
 *
 * Generation runs the `openssl` command line tool: an EC P-256 key and a self-signed
 * certificate for ten years, naming the host and 127.0.0.1 / ::1. Files (docs/FORMAT.md,
 * "Agent TLS identity"): `agent-cert.pem` and `agent-key.pem` (mode 0600), each written
 * atomically, the key first: a certificate on disk means its key is there too.
 */
import { execFile } from 'node:child_process';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { hostname as osHostname } from 'node:os';
import { join } from 'node:path';
import { FerryError, Logger, badInput, writeFileAtomic, makeDirectory } from '../core/index.js';

export const agentCertFile = 'agent-cert.pem';
export const agentKeyFile = 'agent-key.pem';

const validityDays = 3650;

export interface TlsIdentity {
  /** PEM. */
  cert: string;
  /** PEM. */
  key: string;
  /** `sha256:<64 lowercase hex>` of the certificate (DER). */
  fingerprint: string;
  certPath: string;
  keyPath: string;
  /** True when this call generated it. */
  generated: boolean;
}

/** A certificate's SHA-256 fingerprint as ferry prints it: `sha256:<64 lowercase hex>`. */
export function certificateFingerprint(cert: X509Certificate): string {
  return normalizeFingerprint(cert.fingerprint256);
}

/**
 * Accepts a SHA-256 fingerprint as ferry prints it (`sha256:<hex>`), as bare hex, or as
 * openssl and node print it (`AB:CD:...`); returns ferry's form.
 */
export function normalizeFingerprint(value: string): string {
  const hex = value.trim().replace(/^sha256:/i, '').replace(/:/g, '').toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(hex)) throw badInput('fingerprint', value, 'a SHA-256 fingerprint, sha256:<64 hex digits>');
  return `sha256:${hex}`;
}

/** Reads a certificate and its key given by the operator; refuses a key that is not the certificate's. */
export async function loadTlsIdentity(certPath: string, keyPath: string): Promise<TlsIdentity> {
  const [certText, keyText] = await Promise.all([readPem(certPath, '--tls-cert'), readPem(keyPath, '--tls-key')]);
  return identityOf(certText, keyText, certPath, keyPath, false);
}

/**
 * The identity in `dir` (agent-cert.pem, agent-key.pem), generated there if there is no
 * certificate yet. `hostname` goes into the certificate (default: this host's name).
 */
export async function loadOrCreateTlsIdentity(dir: string, options: { hostname?: string; logger?: Logger } = {}): Promise<TlsIdentity> {
  const certPath = join(dir, agentCertFile);
  const keyPath = join(dir, agentKeyFile);
  const existing = await readFile(certPath, 'utf8').catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw new FerryError('io', `cannot read ${certPath}: ${err.message}`, { cause: err });
  });
  if (existing !== undefined) {
    const key = await readFile(keyPath, 'utf8').catch((err: NodeJS.ErrnoException) => {
      throw new FerryError(
        err.code === 'ENOENT' ? 'invalid-state' : 'io',
        `${certPath} exists but its key ${keyPath} cannot be read (${err.code ?? err.message}); remove both to generate a new identity (clients must then pin the new fingerprint)`,
        { cause: err },
      );
    });
    return identityOf(existing, key, certPath, keyPath, false);
  }
  await makeDirectory(dir);
  const { cert, key } = await generate(dir, options.hostname ?? osHostname());
  await writeFileAtomic(keyPath, key, { mode: 0o600, syncDirectory: false });
  await writeFileAtomic(certPath, cert, { mode: 0o644 });
  const identity = identityOf(cert, key, certPath, keyPath, true);
  options.logger?.info('generated the TLS certificate of the control API', { cert: certPath, fingerprint: identity.fingerprint });
  return identity;
}

function identityOf(certText: string, keyText: string, certPath: string, keyPath: string, generated: boolean): TlsIdentity {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(certText);
  } catch (err) {
    throw new FerryError('bad-input', `${certPath}: not a PEM certificate (${(err as Error).message})`, { cause: err });
  }
  let matches: boolean;
  try {
    matches = cert.checkPrivateKey(createPrivateKey(keyText));
  } catch (err) {
    throw new FerryError('bad-input', `${keyPath}: not a PEM private key (${(err as Error).message})`, { cause: err });
  }
  if (!matches) throw new FerryError('bad-input', `${keyPath} is not the private key of the certificate ${certPath}`);
  return { cert: certText, key: keyText, fingerprint: certificateFingerprint(cert), certPath, keyPath, generated };
}

async function readPem(path: string, flag: string): Promise<string> {
  return readFile(path, 'utf8').catch((err: NodeJS.ErrnoException) => {
    throw new FerryError(err.code === 'ENOENT' ? 'not-found' : 'io', `${flag} ${path}: ${err.code === 'ENOENT' ? 'no such file' : err.message}`, { cause: err });
  });
}

/** Runs openssl in a private temporary directory inside `dir`; returns the PEM texts. */
async function generate(dir: string, hostname: string): Promise<{ cert: string; key: string }> {
  // A name that is not a plain DNS name stays out of the certificate (pinning ignores names).
  const name = /^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})$/.test(hostname) ? hostname : undefined;
  const names = [...(name ? [`DNS:${name}`] : []), 'IP:127.0.0.1', 'IP:::1'].join(',');
  const work = await mkdtemp(join(dir, '.agent-tls-'));
  try {
    const certPath = join(work, 'cert.pem');
    const keyPath = join(work, 'key.pem');
    await run('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-sha256',
      '-days', String(validityDays), '-subj', `/CN=${name ?? 'ferry agent'}`, '-addext', `subjectAltName=${names}`,
      '-keyout', keyPath, '-out', certPath,
    ]);
    return { cert: await readFile(certPath, 'utf8'), key: await readFile(keyPath, 'utf8') };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

function run(command: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(command, args, { timeout: 60_000 }, (err, _stdout, stderr) => {
      if (!err) return resolve();
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') {
        reject(new FerryError('not-found', `cannot generate the control API's TLS certificate: the ${command} command is not installed (Debian: apt-get install openssl), or give --tls-cert and --tls-key`, { cause: err }));
      } else {
        reject(new FerryError('io', `${command} ${args.slice(0, 2).join(' ')} failed generating the control API's TLS certificate: ${String(stderr).trim() || err.message}`, { cause: err }));
      }
    });
  });
}
