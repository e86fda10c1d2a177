/**
 * The CLI against a real S3 server (s3rver on loopback): credentials from the environment or
 * from a named profile of a shared credentials file, never from the command line; a store
 * without credentials or out of reach fails with a message that names it and says what to do.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ferry } from '../support/cli.js';
import { makeSparseImage, sha256File } from '../support/images.js';
import { startS3Server, type S3TestServer } from '../support/s3-server.js';
import { tempDir } from '../support/temp.js';

let dir: { path: string; cleanup: () => Promise<void> };
let s3: S3TestServer;
beforeAll(async () => {
  dir = await tempDir();
  s3 = await startS3Server('ferry-cli');
});
afterAll(async () => {
  await s3?.stop();
  await dir?.cleanup();
});

/** An environment with no AWS settings of the test runner's leaking in. */
function cleanEnv(extra: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) if (!name.startsWith('AWS_')) env[name] = value;
  return { ...env, HOME: dir.path, AWS_SHARED_CREDENTIALS_FILE: join(dir.path, 'no-credentials'), AWS_CONFIG_FILE: join(dir.path, 'no-config'), ...extra };
}

describe('ferry copy and restore with an s3:// store', () => {
  it('takes credentials from a profile (--s3-profile) and round-trips a disk byte for byte', async () => {
    const image = join(dir.path, 'disk.img');
    const restored = join(dir.path, 'restored.img');
    await makeSparseImage(image, 9 * 1024 * 1024 + 512, 21); // not a multiple of the chunk size
    const credentials = join(dir.path, 'credentials');
    await writeFile(credentials, `[other]\naws_access_key_id = WRONG\naws_secret_access_key = WRONG\n\n[site-a]\naws_access_key_id = ${s3.accessKeyId}\naws_secret_access_key = ${s3.secretAccessKey}\n`);
    const env = cleanEnv({ AWS_SHARED_CREDENTIALS_FILE: credentials, AWS_PROFILE: 'other' });
    const store = `s3://${s3.bucket}/profile-test`;

    const copy = await ferry(['copy', image, '--store', store, '--s3-endpoint', s3.endpoint, '--s3-profile', 'site-a', '--chunk-size', '1M', '-q'], env);
    expect(copy.stderr).not.toContain('Warning'); // the SDK's Node version notice is the maintainers' business
    expect(copy.code).toBe(0);
    const manifestId = copy.stdout.trim();
    expect(manifestId).toMatch(/^[0-9a-f]{64}$/);

    const restore = await ferry(['restore', '--store', store, '--s3-endpoint', s3.endpoint, '--s3-profile', 'site-a', '--manifest', manifestId, restored, '-q'], env);
    expect(restore.code).toBe(0);
    expect(await sha256File(restored)).toBe(await sha256File(image));

    // AWS_PROFILE names a profile whose keys the server refuses: the flag is what chose site-a.
    const refused = await ferry(['restore', '--store', store, '--s3-endpoint', s3.endpoint, '--manifest', manifestId, join(dir.path, 'refused.img'), '-q'], env);
    expect(refused.code).toBe(6);
    expect(refused.stderr).toContain(store);
  });

  it('without any credentials, fails as store-unavailable naming the store and what to set', async () => {
    const image = join(dir.path, 'small.img');
    await makeSparseImage(image, 1024 * 1024, 3);
    const result = await ferry(['copy', image, '--store', `s3://${s3.bucket}/none`, '--s3-endpoint', s3.endpoint, '-q'], cleanEnv({}));
    expect(result.code).toBe(6);
    expect(result.stderr).toContain(`s3://${s3.bucket}/none`);
    expect(result.stderr).toContain('no S3 credentials');
    expect(result.stderr).toContain('AWS_ACCESS_KEY_ID');
    expect(result.stderr).not.toContain('NodeVersionSupportWarning');
  });

  it('an endpoint nobody listens on fails as store-unavailable naming the store', async () => {
    const image = join(dir.path, 'small2.img');
    await makeSparseImage(image, 1024 * 1024, 4);
    const env = cleanEnv({ AWS_ACCESS_KEY_ID: s3.accessKeyId, AWS_SECRET_ACCESS_KEY: s3.secretAccessKey });
    const result = await ferry(['copy', image, '--store', `s3://${s3.bucket}/away`, '--s3-endpoint', 'http://127.0.0.1:1', '--s3-retry-for', '1s', '-q'], env);
    expect(result.code).toBe(6);
    expect(result.stderr).toContain(`s3://${s3.bucket}/away`);
    expect(result.stderr).toContain('ECONNREFUSED');
    // It said at once that it was retrying, and why it stopped.
    expect(result.stderr).toMatch(/warn: the store failed a request, retrying with backoff/);
    expect(result.stderr).toMatch(/gave up after \d+ attempts/);
  });
});
