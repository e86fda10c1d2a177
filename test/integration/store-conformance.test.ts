/**
 * One conformance suite that every ObjectStore backend passes: file: on a temp directory,
 * s3: against s3rver on loopback, and against Ceph's radosgw (scripts/radosgw) on loopback.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { FileStore, S3Store, type ObjectStore } from '../../src/store/index.js';
import { isFerryError } from '../../src/core/index.js';
import { startRadosgw } from '../support/radosgw.js';
import { startS3Server, type S3TestServer } from '../support/s3-server.js';

function conformance(name: string, open: () => Promise<ObjectStore>) {
  describe(`${name} store conformance`, () => {
    let store: ObjectStore;
    beforeAll(async () => {
      store = await open();
    });
    afterAll(async () => {
      await store.close();
    });

    it('puts and gets objects byte for byte, including empty and multi-MiB ones', async () => {
      for (const size of [0, 1, 4096, 5 * 1024 * 1024 + 7]) {
        const data = randomBytes(size);
        await store.put(`objects/size-${size}`, data);
        expect((await store.get(`objects/size-${size}`)).equals(data)).toBe(true);
        expect(await store.stat(`objects/size-${size}`)).toEqual({ sizeBytes: size });
      }
    });

    it('reads into a given buffer, and refuses an object larger than it, naming both sizes', async () => {
      const into = Buffer.from(new SharedArrayBuffer(5 * 1024 * 1024 + 7));
      for (const size of [0, 4096, into.byteLength]) {
        const data = randomBytes(size);
        await store.put(`into/size-${size}`, data);
        const got = await store.get(`into/size-${size}`, undefined, { into });
        expect(got.equals(data)).toBe(true);
        expect(got.buffer).toBe(into.buffer); // in place, not a copy
      }
      const err = await store.get(`into/size-4096`, undefined, { into: into.subarray(0, 4000) }).catch((e: unknown) => e);
      expect(isFerryError(err, 'checksum-mismatch')).toBe(true);
      expect(String(err)).toMatch(/into\/size-4096 .* is 4096 bytes, more than the 4000 expected/);
      // Asked to, it reads a larger object into a buffer of its own.
      const whole = await store.get(`into/size-${into.byteLength}`, undefined, { into: into.subarray(0, 4000), larger: 'own-buffer' });
      expect(whole.byteLength).toBe(into.byteLength);
      expect(whole.buffer).not.toBe(into.buffer);
    });

    it('overwrites an object whole', async () => {
      await store.put('over/x', Buffer.from('first version, longer'));
      await store.put('over/x', Buffer.from('second'));
      expect((await store.get('over/x')).toString()).toBe('second');
    });

    it('reports a missing object as not-found naming the key', async () => {
      expect(await store.stat('missing/object')).toBeUndefined();
      const err = await store.get('missing/object').catch((e: unknown) => e);
      expect(isFerryError(err, 'not-found')).toBe(true);
      expect(String(err)).toContain('missing/object');
    });

    it('lists keys by prefix, across nested folders', async () => {
      const keys = ['list/a/1', 'list/a/2', 'list/b/1', 'list-other/1'];
      for (const key of keys) await store.put(key, Buffer.from(key));
      const all: string[] = [];
      for await (const key of store.list('list/')) all.push(key);
      expect(all.sort()).toEqual(['list/a/1', 'list/a/2', 'list/b/1']);
      const some: string[] = [];
      for await (const key of store.list('list/a/')) some.push(key);
      expect(some.sort()).toEqual(['list/a/1', 'list/a/2']);
      const none: string[] = [];
      for await (const key of store.list('nothing-here/')) none.push(key);
      expect(none).toEqual([]);
    });

    it('deletes objects, and deleting a missing one is fine', async () => {
      await store.put('del/x', Buffer.from('x'));
      await store.delete('del/x');
      expect(await store.stat('del/x')).toBeUndefined();
      await store.delete('del/x');
    });

    it('refuses keys that escape or are malformed', async () => {
      for (const key of ['../escape', '/abs', 'a//b', 'a/./b', '']) {
        const err = await store.put(key, Buffer.from('x')).catch((e: unknown) => e);
        expect(isFerryError(err, 'bad-input')).toBe(true);
      }
    });

    it('keeps concurrent puts of different objects apart', async () => {
      const items = Array.from({ length: 24 }, (_, i) => ({ key: `conc/${i}`, data: randomBytes(1000 + i) }));
      await Promise.all(items.map((item) => store.put(item.key, item.data)));
      for (const item of items) expect((await store.get(item.key)).equals(item.data)).toBe(true);
    });

    it('reads a batched put back at once, and flushes it (and nothing) without error', async () => {
      await store.flush();
      const items = Array.from({ length: 6 }, (_, i) => ({ key: `batch/${i % 3}/${i}`, data: randomBytes(3000 + i) }));
      await Promise.all(items.map((item) => store.put(item.key, item.data, undefined, { batch: true })));
      for (const item of items) expect((await store.get(item.key)).equals(item.data)).toBe(true);
      await store.flush();
      for (const item of items) expect(await store.stat(item.key)).toEqual({ sizeBytes: item.data.length });
    });

    it('honours an aborted signal', async () => {
      const err = await store.put('aborted/x', Buffer.from('x'), AbortSignal.abort()).catch((e: unknown) => e);
      expect(isFerryError(err, 'aborted')).toBe(true);
    });
  });
}

let dir: string;
conformance('file', async () => {
  dir = await mkdtemp(join(tmpdir(), 'ferry-store-'));
  return new FileStore(dir);
});

let s3: S3TestServer;
conformance('s3', async () => {
  s3 = await startS3Server();
  return new S3Store({ bucket: s3.bucket, prefix: 'some/prefix', endpoint: s3.endpoint, accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey });
});

let radosgw: S3TestServer;
conformance('s3 (radosgw)', async () => {
  radosgw = await startRadosgw();
  return new S3Store({ bucket: radosgw.bucket, prefix: 'some/prefix', endpoint: radosgw.endpoint, accessKeyId: radosgw.accessKeyId, secretAccessKey: radosgw.secretAccessKey });
});

describe('file store specifics', () => {
  it('leaves no temp files behind after puts', async () => {
    const store = new FileStore(dir);
    await store.put('tmpcheck/a', Buffer.from('a'));
    expect(await readdir(join(dir, 'tmpcheck'))).toEqual(['a']);
  });
});

describe('s3 store specifics', () => {
  it('reports an unreachable endpoint as store-unavailable naming the store', async () => {
    const store = new S3Store({ bucket: 'b', prefix: '', endpoint: 'http://127.0.0.1:1', accessKeyId: 'x', secretAccessKey: 'y' });
    const err = await store.get('anything').catch((e: unknown) => e);
    expect(isFerryError(err, 'store-unavailable')).toBe(true);
    expect(String(err)).toContain('s3://b');
    await store.close();
  });
});

afterAll(async () => {
  await s3?.stop();
  await radosgw?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});
