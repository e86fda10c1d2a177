#!/usr/bin/env node
// Benchmark helper: runs s3rver (the npm package, straight from node_modules) on loopback
// in its own process, so its CPU use is separate from the tool being measured.
//
//   node scripts/bench/lib/s3rver.mjs DIRECTORY BUCKET
//
// Prints one JSON line {"endpoint":"http://127.0.0.1:PORT","bucket":...} once it serves,
// and runs until SIGTERM or SIGINT, then closes the server.
// Credentials are s3rver's fixed S3RVER / S3RVER.
import S3rver from 's3rver';

const [directory, bucket = 'bench'] = process.argv.slice(2);
if (!directory) {
  process.stderr.write('usage: s3rver.mjs DIRECTORY [BUCKET]\n');
  process.exit(2);
}
const server = new S3rver({
  address: '127.0.0.1',
  port: 0,
  silent: true,
  directory,
  configureBuckets: [{ name: bucket, configs: [] }],
});
const { port } = await server.run();
process.stdout.write(`${JSON.stringify({ endpoint: `http://127.0.0.1:${port}`, bucket })}\n`);

let closing = false;
const stop = async () => {
  if (closing) return;
  closing = true;
  await server.close().catch(() => {});
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
