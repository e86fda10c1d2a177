/**
 * Seed devices on real files: export, verify, import, resume, encryption, and bad devices.
 * Each bad device must give a clear error naming the object, and nothing unverified may
 * reach the store: after every import, every chunk in the store matches its name and no
 * manifest is written unless every chunk is there.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cp, readFile, readdir, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import tar from 'tar-stream';
import { FileDevice, isFerryError } from '../../src/core/index.js';
import { FileStore, Repository, encodeManifest } from '../../src/store/index.js';
import { copyDisk, restoreDisk } from '../../src/migrate/index.js';
import { exportSeed, importSeed, repairSeed, verifySeed, type SeedKey, type SeedManifest } from '../../src/seed/index.js';
import { makeSparseImage, sha256File } from '../support/images.js';
import { tempDir } from '../support/temp.js';

const MiB = 1024 * 1024;
const chunkSizeBytes = MiB;
const volumeSizeBytes = 3 * MiB;
let dir: { path: string; cleanup: () => Promise<void> };
let diskPath: string;
let otherDiskPath: string;
let goodDevice: string;
let goodManifest: SeedManifest;
let counter = 0;
const fresh = (name: string) => join(dir.path, `${name}-${++counter}`);

async function exportOffline(device: string, path: string, extra: { key?: SeedKey; id?: string } = {}) {
  const disk = await FileDevice.open(path, { readOnly: true });
  try {
    return await exportSeed({ deviceDir: device, disks: [{ id: extra.id ?? 'disk0', device: disk, epoch: 0 }], chunkSizeBytes, volumeSizeBytes, key: extra.key, ferryVersion: 'test' });
  } finally {
    await disk.close();
  }
}

async function copyOfGood(): Promise<string> {
  const device = fresh('device');
  await cp(goodDevice, device, { recursive: true });
  return device;
}

async function newRepo(): Promise<Repository> {
  return Repository.openOrInit(new FileStore(fresh('store')), chunkSizeBytes);
}

/** Every chunk in the store matches its name; returns the keys of chunks and manifests. */
async function storeContents(repo: Repository) {
  const chunks: string[] = [];
  const manifests: string[] = [];
  for await (const key of repo.store.list('chunks/')) {
    const hash = key.split('/')[2]!;
    expect(createHash('sha256').update(await repo.store.get(key)).digest('hex')).toBe(hash);
    chunks.push(hash);
  }
  for await (const id of repo.listManifestIds()) manifests.push(id);
  return { chunks, manifests };
}

async function restoredHash(repo: Repository, manifestId: string): Promise<string> {
  const out = fresh('restored.img');
  await restoreDisk({ repo, manifestId, destPath: out });
  return sha256File(out);
}

beforeAll(async () => {
  dir = await tempDir('ferry-seed-');
  diskPath = join(dir.path, 'disk.img');
  otherDiskPath = join(dir.path, 'other.img');
  await makeSparseImage(diskPath, 12 * MiB, 41, 0.7);
  await makeSparseImage(otherDiskPath, 12 * MiB, 42, 0.7);
  goodDevice = join(dir.path, 'good-device');
  goodManifest = (await exportOffline(goodDevice, diskPath)).manifest;
});
afterAll(async () => dir.cleanup());

describe('seed export, verify and import', () => {
  it('writes size-limited volumes and a manifest that describes them', async () => {
    expect(goodManifest.volumes.length).toBeGreaterThanOrEqual(3);
    for (const v of goodManifest.volumes) {
      const bytes = await readFile(join(goodDevice, v.name));
      expect(bytes.length).toBe(v.sizeBytes);
      expect(v.sizeBytes).toBeLessThanOrEqual(volumeSizeBytes);
      expect(createHash('sha256').update(bytes).digest('hex')).toBe(v.sha256);
    }
    expect(goodManifest.disks[0]!.manifest.epoch).toBe(0);
    expect(goodManifest.createdBy.ferryVersion).toBe('test');
    const files = await readdir(goodDevice);
    expect(files).toContain('seed.json');
    expect(files).not.toContain('seed-progress.jsonl');
  });

  it('verifies a good device and imports it into a store; the disk restores byte-identical', async () => {
    const report = await verifySeed({ deviceDir: goodDevice });
    expect(report.ok).toBe(true);
    expect(report.chunksChecked).toBe(goodManifest.volumes.reduce((s, v) => s + v.chunks, 0));
    const repo = await newRepo();
    const imported = await importSeed({ deviceDir: goodDevice, repo });
    expect(imported.complete).toBe(true);
    expect(imported.imported).toBe(imported.chunksNeeded);
    expect(imported.manifests[0]!.manifestId).toBe(goodManifest.disks[0]!.manifestId);
    expect(await restoredHash(repo, imported.manifests[0]!.manifestId)).toBe(await sha256File(diskPath));
    // A second import skips everything.
    const again = await importSeed({ deviceDir: goodDevice, repo });
    expect(again.imported).toBe(0);
    expect(again.skipped).toBe(again.chunksNeeded);
  });

  it('resumes an interrupted export and ends with the same seed', async () => {
    const device = fresh('resume');
    const disk = await FileDevice.open(diskPath, { readOnly: true });
    const controller = new AbortController();
    const err = await exportSeed({
      deviceDir: device,
      disks: [{ id: 'disk0', device: disk, epoch: 0 }],
      chunkSizeBytes,
      volumeSizeBytes,
      signal: controller.signal,
      progressIntervalMs: 0,
      onProgress: (p) => p.bytesDone >= 7 * MiB && controller.abort(),
    }).catch((e: unknown) => e);
    expect(isFerryError(err, 'aborted')).toBe(true);
    expect(await readdir(device)).toContain('seed-progress.jsonl');
    expect(await readdir(device)).not.toContain('seed.json');
    const unfinished = await verifySeed({ deviceDir: device }).catch((e: unknown) => e);
    expect(isFerryError(unfinished, 'invalid-state')).toBe(true);
    expect((unfinished as Error).message).toMatch(/unfinished seed export/);

    const resumed = await exportSeed({ deviceDir: device, disks: [{ id: 'disk0', device: disk, epoch: 0 }], chunkSizeBytes, volumeSizeBytes });
    await disk.close();
    expect(resumed.resumed).toBe(true);
    expect(resumed.stats.bytesRead).toBeLessThan(12 * MiB);
    expect(resumed.manifest.disks[0]!.manifest.chunks).toEqual(goodManifest.disks[0]!.manifest.chunks);
    expect((await verifySeed({ deviceDir: device })).ok).toBe(true);
    const repo = await newRepo();
    const imported = await importSeed({ deviceDir: device, repo });
    expect(await restoredHash(repo, imported.manifests[0]!.manifestId)).toBe(await sha256File(diskPath));
  });

  it('refuses to overwrite another seed', async () => {
    const err = await exportOffline(await copyOfGood(), otherDiskPath).catch((e: unknown) => e);
    expect(isFerryError(err, 'conflict')).toBe(true);
    expect((err as Error).message).toContain(`already holds seed ${goodManifest.seedId} (complete`);
    // Naming that very seed: it is there, complete; nothing is done.
    const disk = await FileDevice.open(diskPath, { readOnly: true });
    const same = await exportSeed({ deviceDir: await copyOfGood(), disks: [{ id: 'disk0', device: disk, epoch: 0 }], seedId: goodManifest.seedId, chunkSizeBytes, volumeSizeBytes });
    expect(same.alreadyComplete).toBe(true);
    // An unfinished export of other disks is not continued with these.
    const device = fresh('unfinished');
    const controller = new AbortController();
    await exportSeed({ deviceDir: device, disks: [{ id: 'disk0', device: disk, epoch: 0 }], chunkSizeBytes, volumeSizeBytes, signal: controller.signal, progressIntervalMs: 0, onProgress: (p) => p.bytesDone >= 5 * MiB && controller.abort() }).catch(() => {});
    await disk.close();
    const other = await exportOffline(device, otherDiskPath, { id: 'other' }).catch((e: unknown) => e);
    expect(isFerryError(other, 'conflict')).toBe(true);
    expect((other as Error).message).toMatch(/holds an unfinished export of another seed \([0-9a-f]{32}, disks disk0:12582912/);
  });

  it('encrypts with a key file or a passphrase, and names a wrong key as such', async () => {
    for (const key of [{ keyFile: Buffer.from('k'.repeat(32)) }, { passphrase: 'correct horse battery staple' }] as SeedKey[]) {
      const device = fresh('encrypted');
      const { manifest } = await exportOffline(device, diskPath, { key });
      expect(manifest.encryption?.algorithm).toBe('aes-256-gcm');
      const text = await readFile(join(device, 'seed.json'), 'utf8');
      expect(text).not.toContain('correct horse');
      // No plaintext chunk bytes on the device: the first data chunk's bytes are not in any volume.
      const image = await readFile(diskPath);
      let at = manifest.disks[0]!.manifest.chunks[0]![0] * chunkSizeBytes;
      while (image.subarray(at, at + 64).includes(0)) at += 64;
      const plaintext = image.subarray(at, at + 64);
      for (const v of manifest.volumes) expect((await readFile(join(device, v.name))).includes(plaintext)).toBe(false);
      // (while the unencrypted seed of the same disk does hold them)
      const clear = await Promise.all(goodManifest.volumes.map(async (v) => (await readFile(join(goodDevice, v.name))).includes(plaintext)));
      expect(clear).toContain(true);

      const unchecked = await verifySeed({ deviceDir: device });
      expect(unchecked.chunksUnchecked).toBeGreaterThan(0);
      expect((await verifySeed({ deviceDir: device, key })).ok).toBe(true);

      const wrong: SeedKey = 'keyFile' in key ? { keyFile: Buffer.from('x'.repeat(32)) } : { passphrase: 'wrong' };
      for (const attempt of [() => verifySeed({ deviceDir: device, key: wrong }), async () => importSeed({ deviceDir: device, repo: await newRepo(), key: wrong })]) {
        const err = await attempt().catch((e: unknown) => e);
        expect((err as Error).message).toMatch(/^wrong key: fingerprint mismatch/);
      }
      const noKey = await importSeed({ deviceDir: device, repo: await newRepo() }).catch((e: unknown) => e);
      expect((noKey as Error).message).toMatch(/is encrypted: give its key/);

      const repo = await newRepo();
      const imported = await importSeed({ deviceDir: device, repo, key });
      expect(imported.complete).toBe(true);
      expect(await restoredHash(repo, imported.manifests[0]!.manifestId)).toBe(await sha256File(diskPath));
    }
  });
});

describe('bad devices', () => {
  /** Imports a damaged device: returns the report, after checking nothing unverified got in. */
  async function importDamaged(device: string, key?: SeedKey) {
    const repo = await newRepo();
    const report = await importSeed({ deviceDir: device, repo, key });
    const contents = await storeContents(repo);
    expect(report.complete).toBe(false);
    expect(contents.manifests).toEqual([]); // no manifest without all its chunks
    expect(contents.chunks.length).toBe(report.imported);
    expect(report.missing.length).toBeGreaterThan(0);
    return { report, repo };
  }

  it('a truncated volume', async () => {
    const device = await copyOfGood();
    const volume = goodManifest.volumes[1]!;
    await truncate(join(device, volume.name), Math.floor(volume.sizeBytes / 2));
    const verify = await verifySeed({ deviceDir: device });
    expect(verify.ok).toBe(false);
    expect(verify.volumes[1]!.problem).toMatch(/volume vol-000001\.tar .*truncated/);
    const { report } = await importDamaged(device);
    expect(report.volumes[1]!.problem).toMatch(/vol-000001\.tar/);
    expect(report.imported).toBeGreaterThan(0); // the other volumes, and the intact head of this one
  });

  it('a flipped byte: the chunk is named corrupt, the rest imports, and repair fetches it from the source store', async () => {
    const device = await copyOfGood();
    const volume = goodManifest.volumes[0]!;
    const path = join(device, volume.name);
    const bytes = await readFile(path);
    bytes[512 * 4 + 1000]! ^= 0xff; // inside the first chunk's data (after the label and the chunk's header)
    await writeFile(path, bytes);
    const verify = await verifySeed({ deviceDir: device });
    expect(verify.volumes[0]!.problem).toMatch(/vol-000000\.tar has SHA-256 .* \(damaged\)/);
    expect(verify.corrupt).toHaveLength(1);
    expect(verify.corrupt[0]!.reason).toMatch(/chunk [0-9a-f]{64} in volume vol-000000\.tar is corrupt/);
    const { report, repo } = await importDamaged(device);
    expect(report.corrupt.map((c) => c.hash)).toEqual(report.missing);
    expect(report.imported).toBe(report.chunksNeeded - 1);

    // The source side has a store with the disk's chunks (its base copy).
    const source = await newRepo();
    const disk = await FileDevice.open(diskPath, { readOnly: true });
    await copyDisk({ repo: source, disk, diskName: 'disk0' });
    await disk.close();
    const repaired = await repairSeed({ deviceDir: device, repo, from: source });
    expect(repaired.repaired).toBe(1);
    expect(repaired.complete).toBe(true);
    expect(await restoredHash(repo, repaired.manifests[0]!.manifestId)).toBe(await sha256File(diskPath));

    // And in one go: import --repair-from.
    const oneGo = await importSeed({ deviceDir: device, repo: await newRepo(), repairFrom: source });
    expect(oneGo.complete).toBe(true);
    expect(oneGo.repaired).toBe(1);
  });

  it('a missing volume', async () => {
    const device = await copyOfGood();
    await rm(join(device, goodManifest.volumes[2]!.name));
    const verify = await verifySeed({ deviceDir: device });
    expect(verify.volumes[2]!.problem).toBe(`volume vol-000002.tar is missing from ${device}`);
    expect(verify.missing.length).toBe(goodManifest.volumes[2]!.chunks);
    const { report } = await importDamaged(device);
    expect(report.missing.length).toBe(goodManifest.volumes[2]!.chunks);
  });

  it('a volume from another seed', async () => {
    const other = fresh('other-seed');
    const otherSeed = await exportOffline(other, otherDiskPath);
    const device = await copyOfGood();
    await cp(join(other, 'vol-000001.tar'), join(device, 'vol-000001.tar'));
    const verify = await verifySeed({ deviceDir: device });
    expect(verify.volumes[1]!.problem).toContain(`volume vol-000001.tar belongs to another seed (${otherSeed.manifest.seedId}), not to seed ${goodManifest.seedId}`);
    const { report } = await importDamaged(device);
    expect(report.volumes[1]!.problem).toContain('belongs to another seed');
  });

  for (const [label, entry, message] of [
    ['../x', { name: '../x', type: 'file' }, 'entry "../x" escapes the target'],
    ['/abs', { name: '/abs/x', type: 'file' }, 'entry "/abs/x" is an absolute path'],
    ['a symlink', { name: 'chunks/aa/' + 'a'.repeat(64), type: 'symlink', linkname: '/etc/passwd' }, 'is a symlink entry, not a regular file: refused'],
  ] as const) {
    it(`a tar entry that is ${label}`, async () => {
      const device = await copyOfGood();
      const pack = tar.pack();
      const labelEntry = { format: 'ferry-seed-volume', version: 1, seedId: goodManifest.seedId, index: 1 };
      pack.entry({ name: 'ferry-seed-volume.json' }, Buffer.from(JSON.stringify(labelEntry)));
      if (entry.type === 'symlink') pack.entry({ name: entry.name, type: 'symlink', linkname: entry.linkname });
      else pack.entry({ name: entry.name }, Buffer.from('evil'));
      pack.finalize();
      const parts: Buffer[] = [];
      for await (const piece of pack as AsyncIterable<Buffer>) parts.push(piece);
      await writeFile(join(device, 'vol-000001.tar'), Buffer.concat(parts));

      const verify = await verifySeed({ deviceDir: device });
      expect(verify.volumes[1]!.problem).toMatch(/^volume vol-000001\.tar: entry /);
      expect(verify.volumes[1]!.problem).toContain(message);
      const { report } = await importDamaged(device);
      expect(report.volumes[1]!.problem).toMatch(/^volume vol-000001\.tar: entry /);
      expect(report.volumes[1]!.problem).toContain(message);
      for (const escaped of [join(dir.path, 'x'), join(device, '..', 'x'), '/abs/x']) {
        expect(await stat(escaped).catch(() => undefined)).toBeUndefined();
      }
    });
  }

  it('an unknown manifest version', async () => {
    const device = await copyOfGood();
    const path = join(device, 'seed.json');
    const manifest = JSON.parse(await readFile(path, 'utf8'));
    manifest.version = 2;
    await writeFile(path, JSON.stringify(manifest));
    for (const attempt of [() => verifySeed({ deviceDir: device }), async () => importSeed({ deviceDir: device, repo: await newRepo() })]) {
      const err = await attempt().catch((e: unknown) => e);
      expect(isFerryError(err, 'unsupported-version')).toBe(true);
      expect((err as Error).message).toBe(`${path} has seed format version 2; this ferry reads version 1`);
    }
  });

  it('an encrypted seed whose manifest was changed and its checksum made again: refused, its authentication fails', async () => {
    const key: SeedKey = { keyFile: Buffer.from('k'.repeat(32)) };
    const device = fresh('forged');
    await exportOffline(device, diskPath, { key });
    const path = join(device, 'seed.json');
    const manifest = JSON.parse(await readFile(path, 'utf8'));
    expect(manifest.mac).toMatch(/^[0-9a-f]{64}$/);
    // Whoever holds the device moves the replay's start on, and makes every checksum match again.
    manifest.disks[0].manifest.epoch += 1000;
    manifest.disks[0].manifestId = createHash('sha256').update(encodeManifest(manifest.disks[0].manifest)).digest('hex');
    const { checksum: _old, ...body } = manifest;
    manifest.checksum = createHash('sha256').update(JSON.stringify(body)).digest('hex');
    await writeFile(path, JSON.stringify(manifest));
    for (const attempt of [() => verifySeed({ deviceDir: device, key }), async () => importSeed({ deviceDir: device, repo: await newRepo(), key })]) {
      const err = await attempt().catch((e: unknown) => e);
      expect(isFerryError(err, 'checksum-mismatch'), String(err)).toBe(true);
      expect((err as Error).message).toBe(`${path}: authentication fails: the manifest of this encrypted seed was changed by someone without its key`);
    }
    // Without its mac at all, the same.
    delete manifest.mac;
    const { checksum: _again, ...bare } = manifest;
    manifest.checksum = createHash('sha256').update(JSON.stringify(bare)).digest('hex');
    await writeFile(path, JSON.stringify(manifest));
    const err = await verifySeed({ deviceDir: device, key }).catch((e: unknown) => e);
    expect((err as Error).message).toMatch(/no authentication code \(mac\)/);
  });

  it('a volume changed after the export whose chunks all verify: reported as tampered, and nothing is written', async () => {
    const device = await copyOfGood();
    const volume = goodManifest.volumes[0]!;
    const path = join(device, volume.name);
    const bytes = await readFile(path);
    // The zero padding after the volume's label (its first entry): no chunk's bytes, no header.
    const labelBytes = parseInt(bytes.subarray(124, 136).toString('ascii').replace(/\0.*$/s, '').trim(), 8);
    expect(labelBytes % 512).not.toBe(0);
    bytes[512 + labelBytes]! ^= 0x01;
    await writeFile(path, bytes);
    const verify = await verifySeed({ deviceDir: device });
    expect(verify.ok).toBe(false);
    expect(verify.corrupt).toEqual([]);
    expect(verify.volumes[0]).toMatchObject({ ok: false, tampered: true, problem: expect.stringMatching(/every chunk in it verifies, but it is not the volume that was written \(tampered\)/) });
    const repo = await newRepo();
    const report = await importSeed({ deviceDir: device, repo });
    expect(report).toMatchObject({ complete: false, tampered: [volume.name], missing: [], corrupt: [] });
    expect((await storeContents(repo)).manifests).toEqual([]);
  });

  it('a manifest changed after it was written', async () => {
    const device = await copyOfGood();
    const path = join(device, 'seed.json');
    await writeFile(path, (await readFile(path, 'utf8')).replace('"epoch":0', '"epoch":1'));
    const err = await verifySeed({ deviceDir: device }).catch((e: unknown) => e);
    expect(isFerryError(err, 'checksum-mismatch')).toBe(true);
    expect((err as Error).message).toContain('seed.json: checksum mismatch');
  });
});
