/**
 * A real Ceph object gateway (scripts/radosgw: one monitor, one in-memory OSD, radosgw) on
 * loopback, with one bucket, for tests that must pass against a real S3 server and not only
 * s3rver.
 */
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { mkdtemp } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run } from './nbd-tools.js';
import type { S3TestServer } from './s3-server.js';

const script = fileURLToPath(new URL('../../scripts/radosgw', import.meta.url));

/** Two free ports in a row: radosgw's, and its monitor's just after. */
async function freePortPair(): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve, reject) => {
      const server = createServer().listen(0, '127.0.0.1', () => {
        const { port } = server.address() as { port: number };
        server.close(() => resolve(port));
      });
      server.on('error', reject);
    });
    const next = await new Promise<boolean>((resolve) => {
      const server = createServer().listen(port + 1, '127.0.0.1', () => server.close(() => resolve(true)));
      server.on('error', () => resolve(false));
    });
    if (next && port < 65535) return port;
  }
}

export async function startRadosgw(bucket = 'ferry-test'): Promise<S3TestServer> {
  const dir = join(await mkdtemp(join(tmpdir(), 'ferry-radosgw-')), 'ceph');
  const started = await run(script, ['start', dir, String(await freePortPair())], { timeoutMs: 300_000, allowFailure: true });
  if (started.code !== 0) throw new Error(`scripts/radosgw did not start (${started.code}): ${started.stderr}`);
  const field = (name: string) => new RegExp(`^${name} (\\S+)$`, 'm').exec(started.stdout)?.[1] ?? '';
  const server = { endpoint: field('endpoint'), bucket, accessKeyId: field('access-key'), secretAccessKey: field('secret-key') };
  const client = new S3Client({ endpoint: server.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey } });
  try {
    await client.send(new CreateBucketCommand({ Bucket: bucket }));
  } finally {
    client.destroy();
  }
  return {
    ...server,
    async stop() {
      await run(script, ['stop', dir], { timeoutMs: 60_000, allowFailure: true });
    },
  };
}
