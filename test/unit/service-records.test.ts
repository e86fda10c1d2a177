/**
 * The migration service's records in SQLite: tokens kept only as their SHA-256 (the token's
 * bytes are nowhere in the database's files), hosts with the agent token the service must
 * present, stores and their checks, migrations with their states and events; the database
 * file private to its user; and the rules a migration's settings follow.
 */
import { chmod, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isFerryError, openDatabase } from '../../src/core/index.js';
import { ServiceRecords, inventoryIssues, rateWindowIssues, referenceIssues, settingsIssues, tokenHash, type HostInput, type MigrationSettings } from '../../src/migrate/index.js';
import { tempDir } from '../support/temp.js';

let dir: Awaited<ReturnType<typeof tempDir>>;
beforeAll(async () => {
  dir = await tempDir('service-records-');
});
afterAll(async () => {
  await dir.cleanup();
});

function host(name: string, role: HostInput['role'], inventory?: HostInput['inventory']): HostInput {
  return { name, role, agent: { url: 'https://10.0.0.5:7443', fingerprint: `sha256:${'0'.repeat(64)}`, token: `secret-agent-token-${name}` }, ...(inventory ? { inventory } : {}) };
}

const settings: MigrationSettings = {
  vms: [{ name: 'db', disks: [{ id: 'db-root' }, { id: 'db-data', replica: '/r/db-data.img' }] }],
  transport: { mode: 'network' },
  throttle: { rate: '50M/s', schedule: [] },
  cutover: { window: '30m', budget: '2s', hold: false },
};

/** Every byte of the database's files (the main file, and its WAL while open). */
async function databaseBytes(folder: string): Promise<Buffer> {
  const files = (await readdir(folder)).filter((f) => f.startsWith('tokens.db'));
  return Buffer.concat(await Promise.all(files.map((f) => readFile(join(folder, f)))));
}

describe('service records', () => {
  it('keeps a token only as its SHA-256: the token is nowhere in the database files', async () => {
    const path = join(dir.path, 'tokens.db');
    const db = openDatabase(path);
    const records = new ServiceRecords(db);
    const { token, record } = records.createToken('ci');
    expect(token).toMatch(/^ferry_[A-Za-z0-9_-]{43}$/);
    expect(record).toMatchObject({ name: 'ci' });
    expect(record.lastUsedAtMs).toBeUndefined();

    for (const bytes of [await databaseBytes(dir.path), (db.close(), await databaseBytes(dir.path))]) {
      expect(bytes.includes(Buffer.from(token))).toBe(false);
      expect(bytes.includes(Buffer.from(token.slice('ferry_'.length)))).toBe(false);
      expect(bytes.includes(Buffer.from(tokenHash(token)))).toBe(true);
    }

    const again = new ServiceRecords(openDatabase(path));
    expect(again.authenticate(`${token}x`)).toBeUndefined();
    expect(again.authenticate('')).toBeUndefined();
    const used = again.authenticate(token, 1_000_000);
    expect(used).toMatchObject({ id: record.id, name: 'ci', lastUsedAtMs: 1_000_000 });
    // Last use is written at most once a minute.
    expect(again.authenticate(token, 1_030_000)?.lastUsedAtMs).toBe(1_000_000);
    expect(again.authenticate(token, 1_060_000)?.lastUsedAtMs).toBe(1_060_000);
    expect(again.listTokens()).toEqual([{ id: record.id, name: 'ci', createdAtMs: record.createdAtMs, lastUsedAtMs: 1_060_000 }]);
  });

  it('refuses a second token of the same name and a bad name; revokes by name', () => {
    const records = new ServiceRecords(openDatabase(join(dir.path, 'names.db')));
    const { token } = records.createToken('ops');
    expect(() => records.createToken('ops')).toThrow(/a token named "ops" exists already/);
    expect(() => records.createToken('two words')).toThrow(/token name: expected 1 to 64 letters/);
    expect(records.revokeToken('ops').name).toBe('ops');
    expect(records.authenticate(token)).toBeUndefined();
    try {
      records.revokeToken('ops');
      expect.unreachable();
    } catch (err) {
      expect(isFerryError(err, 'not-found')).toBe(true);
    }
  });

  it('keeps the schema version, and opening again changes nothing', () => {
    const path = join(dir.path, 'schema.db');
    const db = openDatabase(path);
    new ServiceRecords(db);
    new ServiceRecords(db);
    expect(db.prepare("SELECT version FROM schema_versions WHERE component = 'service'").get()).toEqual({ version: 2 });
    const tables = (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").all() as Array<{ name: string }>).map((t) => t.name);
    expect(tables).toEqual(expect.arrayContaining(['tokens', 'hosts', 'stores', 'migrations', 'migration_events', 'schema_versions']));
    db.close();
  });

  it('keeps hosts with the agent token the service presents, stores with their last check, and refuses to remove either while a migration names it', () => {
    const records = new ServiceRecords(openDatabase(join(dir.path, 'hosts.db')));
    const a = records.createHost(host('a', 'source', { vms: [{ name: 'db', disks: [{ id: 'db-root', sizeBytes: 4096 }] }] }));
    const b = records.createHost(host('b', 'destination'));
    expect(records.getHost(a.id)).toEqual(a);
    expect(a.agent.token).toBe('secret-agent-token-a');
    expect(a.inventory?.vms[0]?.disks[0]).toEqual({ id: 'db-root', sizeBytes: 4096 });
    expect(b.inventory).toBeUndefined();
    expect(() => records.createHost(host('a', 'both'))).toThrow(/a host named "a" exists already/);
    expect(records.listHosts().map((h) => h.name)).toEqual(['a', 'b']);

    const s = records.createStore({ name: 'remote', url: 's3://bucket/x', s3: { endpoint: 'http://127.0.0.1:9000' } });
    expect(s.lastCheck).toBeUndefined();
    const checked = records.recordStoreCheck(s.id, { atMs: 5, reachable: false, code: 'store-unavailable', message: 'connect ECONNREFUSED' });
    expect(checked).toMatchObject({ s3: { endpoint: 'http://127.0.0.1:9000' }, lastCheck: { atMs: 5, reachable: false, message: 'connect ECONNREFUSED' } });

    const m = records.createMigration({ name: 'shop', sourceHost: a.id, destinationHost: b.id, store: s.id, settings });
    expect(() => records.deleteHost(a.id)).toThrow(new RegExp(`host "a" \\(${a.id}\\) is used by migration ${m.id} \\(draft\\)`));
    expect(() => records.deleteHost(b.id)).toThrow(/is used by migration/);
    expect(() => records.deleteStore(s.id)).toThrow(/store "remote" .* is used by migration/);
    const spare = records.createHost(host('spare', 'both'));
    records.deleteHost(spare.id);
    expect(records.findHost(spare.id)).toBeUndefined();
    expect(() => records.getHost(spare.id)).toThrow(/no host/);
  });

  it('keeps migrations with their state, settings and events', () => {
    const records = new ServiceRecords(openDatabase(join(dir.path, 'migrations.db')));
    const a = records.createHost(host('a', 'source'));
    const b = records.createHost(host('b', 'destination'));
    const s = records.createStore({ name: 'local', url: 'file:/srv/ferry' });
    const first = records.createMigration({ name: 'one', sourceHost: a.id, destinationHost: b.id, store: s.id, settings });
    expect(first).toMatchObject({ name: 'one', state: 'draft', settings });
    records.transition(first.id, 'validated', 'validated');
    const throttled = records.updateSettings(first.id, { ...settings, throttle: { rate: '10M/s', schedule: [] } }, 'throttle: rate 50M/s -> 10M/s');
    expect(throttled.settings.throttle.rate).toBe('10M/s');
    records.transition(first.id, 'failed', 'it broke', 'the agent went away');
    expect(records.getMigration(first.id)).toMatchObject({ state: 'failed', error: 'the agent went away' });

    const events = records.events(first.id);
    expect(events.map((e) => e.message)).toEqual(['created as a draft: 1 VM(s), 2 disk(s), transport network', 'validated', 'throttle: rate 50M/s -> 10M/s', 'it broke']);
    expect(records.events(first.id, events[1]!.seq).map((e) => e.message)).toEqual(['throttle: rate 50M/s -> 10M/s', 'it broke']);

    const second = records.createMigration({ name: 'two', sourceHost: a.id, destinationHost: b.id, store: s.id, settings });
    const listed = records.listMigrations();
    expect(listed.map((m) => m.id).sort()).toEqual([first.id, second.id].sort());
    expect(listed[0]!.createdAtMs).toBeGreaterThanOrEqual(listed[1]!.createdAtMs); // newest first
    expect(records.events(second.id)).toHaveLength(1);
    expect(() => records.getMigration('mig-nope')).toThrow(/no migration "mig-nope"/);
    expect(() => records.transition('mig-nope', 'cancelled', 'x')).toThrow(/no migration/);
  });

  it('keeps the database file private: 0600, also when it was readable by others', async () => {
    const path = join(dir.path, 'private', 'ferry.db');
    openDatabase(path).close();
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    expect((await stat(join(dir.path, 'private'))).mode & 0o777).toBe(0o700);

    const loose = join(dir.path, 'loose.db');
    await writeFile(loose, '');
    await chmod(loose, 0o644);
    const db = openDatabase(loose);
    new ServiceRecords(db);
    expect((await stat(loose)).mode & 0o777).toBe(0o600);
    expect((await stat(`${loose}-wal`)).mode & 0o777).toBe(0o600);
    db.close();
  });
});

describe('migration rules', () => {
  it('finds names listed twice, a runbook that does not match the VMs, a past window, a backwards rate window', () => {
    const bad: MigrationSettings = {
      ...settings,
      vms: [
        { name: 'db', disks: [{ id: 'd1', replica: '/r/1' }, { id: 'd1', replica: '/r/1' }] },
        { name: 'db', disks: [{ id: 'd2' }] },
      ],
      runbook: { boot: [{ vms: ['db', 'web'] }], onFailure: 'stop' },
      cutover: { at: '2020-01-01T00:00:00Z', window: '1h', budget: '2s', hold: false },
    };
    const issues = settingsIssues(bad, Date.parse('2026-01-01T00:00:00Z')).map((i) => `${i.path.join('.')}: ${i.message}`);
    expect(issues).toEqual([
      'vms.0.disks.1.id: disk "d1" is listed twice (also vms[0].disks[0])',
      'vms.0.disks.1.replica: replica "/r/1" is also the replica of vms[0].disks[0]',
      'vms.1.name: VM "db" is listed twice (also vms[0])',
      'runbook.boot.0.vms.1: expected one of the migration\'s VMs (db, db), received "web"',
      'cutover.at: expected a time whose window (at + 1h) has not passed, received "2020-01-01T00:00:00Z": the window ended 2020-01-01T01:00:00.000Z, before now (2026-01-01T00:00:00.000Z)',
    ]);
    // The same window is fine while it is open.
    expect(settingsIssues({ ...settings, cutover: bad.cutover }, Date.parse('2020-01-01T00:59:00Z'))).toEqual([]);
    expect(rateWindowIssues({ days: ['mon'], from: '18:00', to: '08:00', rate: '1M/s' })).toEqual([{ path: ['to'], message: 'expected a time after "from" (18:00), received "08:00"' }]);
    expect(rateWindowIssues({ days: ['mon'], from: '18:00', to: '24:00', rate: '1M/s' })).toEqual([]);
  });

  it('checks hosts and store against the records, and disks against the source inventory', () => {
    const records = new ServiceRecords(openDatabase(join(dir.path, 'rules.db')));
    const a = records.createHost(host('a', 'source', { vms: [{ name: 'db', disks: [{ id: 'db-root' }] }] }));
    const b = records.createHost(host('b', 'destination', { vms: [{ name: 'web', disks: [{ id: 'db-data' }] }] }));
    const s = records.createStore({ name: 'local', url: 'file:/srv/ferry' });
    expect(referenceIssues(records, { sourceHost: a.id, destinationHost: b.id, store: s.id })).toEqual([]);
    // A source-only host cannot be the destination; a host of both roles may be both ends (one machine).
    expect(referenceIssues(records, { sourceHost: a.id, destinationHost: a.id, store: 'store-x' }).map((i) => i.path.join('.'))).toEqual(['destinationHost', 'store']);
    const both = records.createHost(host('both', 'both'));
    expect(referenceIssues(records, { sourceHost: both.id, destinationHost: both.id, store: s.id })).toEqual([]);
    expect(inventoryIssues(records, a.id, settings)).toEqual([
      { path: ['vms', 0, 'disks', 1, 'id'], message: 'disk "db-data" is not a disk of VM "db" at host "a" (its disks: db-root); it is a disk of VM "web" at host "b"' },
    ]);
    // A host without an inventory has nothing to check against.
    const bare = records.createHost(host('bare', 'both'));
    expect(inventoryIssues(records, bare.id, settings)).toEqual([]);
  });
});
