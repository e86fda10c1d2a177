import { expect, it } from 'vitest';
import { isFerryError } from '../../src/core/index.js';
import { decodeManifest, encodeManifest, type Manifest } from '../../src/store/index.js';

const good: Manifest = {
  format: 'ferry-manifest',
  version: 1,
  disk: { name: 'vm/disk0', sizeBytes: 10 * 1024 * 1024 },
  chunkSizeBytes: 4 * 1024 * 1024,
  epoch: 42,
  createdAt: '2026-11-22T00:00:00.000Z',
  chunks: [
    [0, 'a'.repeat(64)],
    [2, 'b'.repeat(64)],
  ],
};

function errorOf(value: unknown): unknown {
  try {
    decodeManifest(Buffer.from(JSON.stringify(value)), 'manifests/x');
  } catch (err) {
    return err;
  }
  return undefined;
}

it('round-trips a manifest', () => {
  expect(decodeManifest(encodeManifest(good), 'm')).toEqual(good);
});

it('refuses an unknown version as unsupported, naming the object and the version', () => {
  const err = errorOf({ ...good, version: 3 });
  expect(isFerryError(err, 'unsupported-version')).toBe(true);
  expect(String(err)).toMatch(/manifests\/x.*version 3/);
});

it.each([
  ['a chunk index past the end', { chunks: [[3, 'a'.repeat(64)]] }],
  ['indexes out of order', { chunks: [[1, 'a'.repeat(64)], [0, 'b'.repeat(64)]] }],
  ['a hash that is not SHA-256 hex', { chunks: [[0, 'xyz']] }],
  ['a negative size', { disk: { name: 'd', sizeBytes: -1 } }],
  ['another format', { format: 'something-else' }],
])('refuses %s', (_what, change) => {
  const err = errorOf({ ...good, ...change });
  expect(isFerryError(err, 'bad-input')).toBe(true);
  expect(String(err)).toContain('manifests/x');
});
