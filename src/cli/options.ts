/**
 * Flag parsing shared by the commands: node:util parseArgs with ferry's errors, store
 * settings from flags and the usual AWS_* environment variables.
 */
import { homedir } from 'node:os';
import { join } from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { FerryError, parseDuration, parseSize, parseRate } from '../core/index.js';
import { defaultRetryForMs, defaultS3TimeoutMs, openStore, type ObjectStore, type RetryPolicy, type S3Settings } from '../store/index.js';

export type OptionSpec = NonNullable<ParseArgsConfig['options']>;

export const storeOptions = {
  store: { type: 'string' },
  's3-endpoint': { type: 'string' },
  's3-region': { type: 'string' },
  's3-profile': { type: 'string' },
  's3-timeout': { type: 'string' },
  's3-retry-for': { type: 'string' },
} satisfies OptionSpec;

export const commonOptions = {
  help: { type: 'boolean', short: 'h' },
  quiet: { type: 'boolean', short: 'q' },
  json: { type: 'boolean' },
} satisfies OptionSpec;

export function parse<T extends OptionSpec>(argv: string[], options: T) {
  try {
    return parseArgs({ args: argv, options: { ...commonOptions, ...options }, allowPositionals: true, strict: true });
  } catch (err) {
    throw new FerryError('bad-input', (err as Error).message.replace(/\. To specify a positional.*$/s, ''));
  }
}

export function required<T>(value: T | undefined, flag: string): T {
  if (value === undefined || value === '') throw new FerryError('bad-input', `${flag} is required`);
  return value;
}

export function positionals(list: string[], names: string[]): string[] {
  if (list.length !== names.length) {
    throw new FerryError('bad-input', `expected ${names.join(' ')} (${names.length} argument${names.length === 1 ? '' : 's'}), received ${list.length}: ${JSON.stringify(list)}`);
  }
  return list;
}

export function sizeOption(value: string | undefined, flag: string): number | undefined {
  return value === undefined ? undefined : parseSize(value, flag);
}

export function rateOption(value: string | undefined, flag: string): number | undefined {
  return value === undefined ? undefined : parseRate(value, flag);
}

export function durationOption(value: string | undefined, flag: string, minMs: number, maxMs: number): number | undefined {
  if (value === undefined) return undefined;
  const ms = parseDuration(value, flag);
  if (ms < minMs || ms > maxMs) throw new FerryError('bad-input', `${flag}: expected a duration from ${minMs} ms to ${maxMs / 1000} s, received ${JSON.stringify(value)}`);
  return ms;
}

export function intOption(value: string | undefined, flag: string, min: number, max: number): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new FerryError('bad-input', `${flag}: expected a whole number from ${min} to ${max}, received ${JSON.stringify(value)}`);
  }
  return n;
}

/** Opens the store named by --store, with S3 settings from flags, then AWS_* variables. */
type S3Flags = { 's3-endpoint'?: string; 's3-region'?: string; 's3-profile'?: string; 's3-timeout'?: string; 's3-retry-for'?: string };

export function storeFromFlags(values: { store?: string } & S3Flags): ObjectStore {
  return openStore(required(values.store, '--store'), s3SettingsFromFlags(values));
}

/** S3 settings from the --s3-* flags, then the usual AWS_* variables. */
export function s3SettingsFromFlags(values: S3Flags): S3Settings {
  const env = process.env;
  return {
    timeoutMs: durationOption(values['s3-timeout'], '--s3-timeout', 100, 3_600_000) ?? defaultS3TimeoutMs,
    retry: { retryForMs: durationOption(values['s3-retry-for'], '--s3-retry-for', 0, 7 * 86_400_000) ?? defaultRetryForMs, onRetry: retryReporter() },
    endpoint: values['s3-endpoint'] ?? env.AWS_ENDPOINT_URL_S3 ?? env.AWS_ENDPOINT_URL,
    region: values['s3-region'] ?? env.AWS_REGION ?? env.AWS_DEFAULT_REGION,
    accessKeyId: env.AWS_ACCESS_KEY_ID,
    secretAccessKey: env.AWS_SECRET_ACCESS_KEY,
    sessionToken: env.AWS_SESSION_TOKEN,
    // Without one, the SDK reads AWS_PROFILE itself.
    profile: values['s3-profile'],
  };
}

/** The state database: --db, else ferry.db in $FERRY_STATE_DIR or ~/.local/state/ferry. */
export function stateDbPath(flag: string | undefined): string {
  if (flag) return flag;
  const stateDir = process.env.FERRY_STATE_DIR ?? join(homedir(), '.local', 'state', 'ferry');
  return join(stateDir, 'ferry.db');
}

export const stateDbHelp = `  --db PATH         the state database (default $FERRY_STATE_DIR/ferry.db, or
                    ~/.local/state/ferry/ferry.db)`;

export const storeHelp = `Store:
  --store URL          file:<dir> or s3://bucket[/prefix]
  --s3-endpoint URL    S3-compatible endpoint (default: $AWS_ENDPOINT_URL_S3, $AWS_ENDPOINT_URL, or AWS)
  --s3-region NAME     region (default: $AWS_REGION, or us-east-1)
  --s3-profile NAME    credentials of a profile in ~/.aws/credentials (default: $AWS_PROFILE)
  --s3-timeout DUR     a request that has not completed in this long (plus 1 s per 256 KiB
                       it uploads) counts as failed: a stalled connection (default 30s)
  --s3-retry-for DUR   how long a failing request (5xx, SlowDown, reset, timed out) is
                       tried again, with backoff, before the command fails (default 10m)
  Credentials come from $AWS_ACCESS_KEY_ID and $AWS_SECRET_ACCESS_KEY when set, else from the
  profile; they are never taken on the command line.`;

/** Says on stderr that the store is being retried: the first time, then at most every 10 s with a count. */
function retryReporter(): NonNullable<RetryPolicy['onRetry']> {
  let lastMs = 0;
  let since = 0;
  return ({ what, error, attempt, delayMs }) => {
    since++;
    if (Date.now() - lastMs < 10_000) return;
    process.stderr.write(`warn: the store failed ${since === 1 ? 'a request' : `${since} requests`}, retrying with backoff (${what}, attempt ${attempt}, next in ${(delayMs / 1000).toFixed(1)} s): ${error.message}\n`);
    lastMs = Date.now();
    since = 0;
  };
}
