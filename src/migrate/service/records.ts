/**
 * What the migration service (`ferry serve`) keeps in the state database (docs/FORMAT.md,
 * "State database: service tables"): the API's tokens (only their SHA-256), the hosts and
 * how to reach their agents, the stores, the migrations with their state and settings, and
 * each migration's event log. Schema steps under the component name `service`.
 *
 * An agent's bearer token is kept as given: the service must present it to the agent. That
 * is why the database file is private to its user (core/database.ts).
 */
import { createHash, randomBytes } from 'node:crypto';
import { FerryError, badInput, migrateSchema, type Database } from '../../core/index.js';

/** Names of tokens, hosts, stores, migrations and VMs. */
export const namePattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
export const nameExpected = "1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit";

export const hostRoles = ['source', 'destination', 'both'] as const;
export type HostRole = (typeof hostRoles)[number];

export const weekdays = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'] as const;
export type Weekday = (typeof weekdays)[number];

/** The states of a migration, in order; `failed` and `cancelled` end it early. */
export const migrationStates = ['draft', 'validated', 'copying', 'replicating', 'ready', 'cutting over', 'done', 'failed', 'cancelled'] as const;
export type MigrationState = (typeof migrationStates)[number];

/** States after which nothing more happens to a migration. */
export const finalMigrationStates: readonly MigrationState[] = ['done', 'failed', 'cancelled'];

export interface TokenRecord {
  id: string;
  name: string;
  createdAtMs: number;
  lastUsedAtMs?: number;
}

/** The VMs and disks a host's agent reports (or an operator gave), as far as migrations need them. */
export interface HostInventory {
  vms: Array<{ name: string; disks: Array<{ id: string; sizeBytes?: number }> }>;
}

export interface HostInput {
  name: string;
  role: HostRole;
  agent: {
    /** `https://host:port` of the agent's control API. */
    url: string;
    /** The pinned SHA-256 fingerprint of the agent's TLS certificate (`sha256:<hex>`). */
    fingerprint: string;
    /** The bearer token the agent expects. */
    token: string;
  };
  inventory?: HostInventory;
}

export interface HostRecord extends HostInput {
  id: string;
  createdAtMs: number;
}

/** The outcome of a store's connectivity check. */
export interface StoreCheck {
  atMs: number;
  reachable: boolean;
  /** What was found, or why the store could not be used. */
  message: string;
  /** The error's code when not reachable. */
  code?: string;
  repositoryId?: string;
  chunkSizeBytes?: number;
  /** The store was empty and the check made it a ferry repository. */
  initialized?: boolean;
}

export interface StoreInput {
  name: string;
  /** `file:<dir>` or `s3://bucket[/prefix]`. */
  url: string;
  /** For s3: the endpoint and region, when not the service's own defaults. */
  s3?: { endpoint?: string; region?: string };
}

export interface StoreRecord extends StoreInput {
  id: string;
  createdAtMs: number;
  lastCheck?: StoreCheck;
}

export interface MigrationDisk {
  /** The disk's id at the source host's agent (and in the store). */
  id: string;
  /** Where the replica goes at the destination host; default: the destination agent's choice. */
  replica?: string;
}

export interface MigrationVm {
  name: string;
  disks: MigrationDisk[];
  /** How each side runs the VM, as in a cutover plan (docs/FORMAT.md): needed for the cutover. */
  source?: Record<string, unknown>;
  destination?: Record<string, unknown>;
  /** When the destination VM counts as healthy, as in a cutover plan. */
  health?: Record<string, unknown>;
}

/** One entry of a weekly schedule of rates: on these days, from..to (UTC, HH:MM), this rate. */
export interface RateWindow {
  days: Weekday[];
  from: string;
  to: string;
  rate: string;
}

export interface ThrottleSettings {
  /** The link's rate outside the schedule's windows: `50M/s`, `400Mbit/s`, `unlimited`. */
  rate: string;
  schedule: RateWindow[];
}

/**
 * What a migration is to do. Units stay as the operator wrote them (`4M`, `50M/s`, `30m`):
 * they are checked when the settings are accepted and parsed where they are used.
 */
export interface MigrationSettings {
  vms: MigrationVm[];
  transport: { mode: 'network' } | { mode: 'seed'; device?: string; volumeSize?: string };
  throttle: ThrottleSettings;
  backpressure?: { highWater?: string; maxDelay?: string };
  cutover: { at?: string; window: string; budget: string; hold: boolean; verify?: 'deltas' | 'full'; maxLagSeconds?: number };
  runbook?: { boot: Array<{ vms: string[]; delay?: string }>; onFailure: 'stop' | 'continue' };
}

export interface MigrationInput {
  name: string;
  sourceHost: string;
  destinationHost: string;
  store: string;
  settings: MigrationSettings;
}

export interface MigrationRecord extends MigrationInput {
  id: string;
  state: MigrationState;
  createdAtMs: number;
  updatedAtMs: number;
  /** Why it failed. */
  error?: string;
  /** Its cutover (cutover-records), once one was begun. */
  cutoverId?: string;
  /** The operator asked for the cutover (now, or at `settings.cutover.at`). */
  cutoverRequested: boolean;
  /** Paused by the operator: nothing of it moves on, its source disks are parked. */
  paused: boolean;
  /** Transport seed: how far the seed is. */
  seed?: SeedProgress;
}

/** Where one disk of a running migration is: its base copy, its replica at the destination. */
export interface MigrationDiskProgress {
  vm: string;
  disk: string;
  /** The base copy's manifest, once the copy is done. */
  manifestId?: string;
  /** The replica's id at the destination agent. */
  replicaId: string;
  /** The replica's path there, once the agent has it. */
  replicaPath?: string;
}

/** Where a migration's seed is (transport seed): exported at the source, shipped, imported at the destination. */
export interface SeedProgress {
  /** The seed the source agent exported onto the device. */
  seedId?: string;
  /** Where the device is at the destination host, once it arrived. */
  arrivedDevice?: string;
  /** Its chunks are in the store and the disks' manifests written. */
  imported?: boolean;
}

export interface MigrationEvent {
  seq: number;
  atMs: number;
  message: string;
}

const schema = [
  `CREATE TABLE tokens (
     id TEXT PRIMARY KEY,
     name TEXT NOT NULL UNIQUE,
     sha256 TEXT NOT NULL UNIQUE,
     created_at INTEGER NOT NULL,
     last_used_at INTEGER
   );
   CREATE TABLE hosts (
     id TEXT PRIMARY KEY,
     name TEXT NOT NULL UNIQUE,
     role TEXT NOT NULL CHECK (role IN ('source', 'destination', 'both')),
     agent_url TEXT NOT NULL,
     agent_fingerprint TEXT NOT NULL,
     agent_token TEXT NOT NULL,
     inventory TEXT,
     created_at INTEGER NOT NULL
   );
   CREATE TABLE stores (
     id TEXT PRIMARY KEY,
     name TEXT NOT NULL UNIQUE,
     url TEXT NOT NULL,
     s3 TEXT,
     created_at INTEGER NOT NULL,
     last_check TEXT
   );
   CREATE TABLE migrations (
     id TEXT PRIMARY KEY,
     name TEXT NOT NULL,
     state TEXT NOT NULL,
     source_host TEXT NOT NULL REFERENCES hosts (id),
     destination_host TEXT NOT NULL REFERENCES hosts (id),
     store TEXT NOT NULL REFERENCES stores (id),
     settings TEXT NOT NULL,
     created_at INTEGER NOT NULL,
     updated_at INTEGER NOT NULL,
     error TEXT
   );
   CREATE TABLE migration_events (
     seq INTEGER PRIMARY KEY AUTOINCREMENT,
     migration_id TEXT NOT NULL REFERENCES migrations (id),
     at INTEGER NOT NULL,
     message TEXT NOT NULL
   );
   CREATE INDEX migration_events_by_migration ON migration_events (migration_id, seq);`,
  `ALTER TABLE migrations ADD COLUMN cutover_id TEXT;
   ALTER TABLE migrations ADD COLUMN cutover_requested INTEGER NOT NULL DEFAULT 0;
   ALTER TABLE migrations ADD COLUMN paused INTEGER NOT NULL DEFAULT 0;
   ALTER TABLE migrations ADD COLUMN seed TEXT;
   CREATE TABLE migration_disks (
     migration_id TEXT NOT NULL REFERENCES migrations (id),
     vm TEXT NOT NULL,
     disk TEXT NOT NULL,
     manifest TEXT,
     replica_id TEXT NOT NULL,
     replica_path TEXT,
     PRIMARY KEY (migration_id, disk)
   );`,
];

/** A token's last use is written at most this often: a request should not cost a synced write. */
const lastUsedResolutionMs = 60_000;

/** The prefix of every API token ferry makes: tells a leaked one apart from other secrets. */
export const tokenPrefix = 'ferry_';

/** SHA-256 of a token, hex: what the `tokens` table keeps. */
export function tokenHash(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

interface TokenRow {
  id: string;
  name: string;
  created_at: number;
  last_used_at: number | null;
}

interface HostRow {
  id: string;
  name: string;
  role: HostRole;
  agent_url: string;
  agent_fingerprint: string;
  agent_token: string;
  inventory: string | null;
  created_at: number;
}

interface StoreRow {
  id: string;
  name: string;
  url: string;
  s3: string | null;
  created_at: number;
  last_check: string | null;
}

interface MigrationRow {
  id: string;
  name: string;
  state: MigrationState;
  source_host: string;
  destination_host: string;
  store: string;
  settings: string;
  created_at: number;
  updated_at: number;
  error: string | null;
  cutover_id: string | null;
  cutover_requested: number;
  paused: number;
  seed: string | null;
}

export class ServiceRecords {
  constructor(private readonly db: Database) {
    migrateSchema(db, 'service', schema);
  }

  // Tokens

  /** Makes a token; returns it once, in clear: only its hash is kept. */
  createToken(name: string): { token: string; record: TokenRecord } {
    if (!namePattern.test(name)) throw badInput('token name', name, nameExpected);
    const token = `${tokenPrefix}${randomBytes(32).toString('base64url')}`;
    const id = newId('tok');
    this.insert(`a token named ${JSON.stringify(name)}`, () =>
      this.db.prepare('INSERT INTO tokens (id, name, sha256, created_at) VALUES (?, ?, ?, ?)').run(id, name, tokenHash(token), Date.now()),
    );
    return { token, record: this.token(id)! };
  }

  listTokens(): TokenRecord[] {
    return (this.db.prepare('SELECT id, name, created_at, last_used_at FROM tokens ORDER BY created_at, name').all() as TokenRow[]).map(tokenFromRow);
  }

  /** Removes the token named `name` (or with that id): it no longer opens the API. */
  revokeToken(nameOrId: string): TokenRecord {
    const row = this.db.prepare('SELECT id, name, created_at, last_used_at FROM tokens WHERE name = ? OR id = ?').get(nameOrId, nameOrId) as TokenRow | undefined;
    if (!row) throw new FerryError('not-found', `no token named ${JSON.stringify(nameOrId)}`);
    this.db.prepare('DELETE FROM tokens WHERE id = ?').run(row.id);
    return tokenFromRow(row);
  }

  /** The token whose hash matches `token`'s, noting its use; undefined if there is none. */
  authenticate(token: string, nowMs = Date.now()): TokenRecord | undefined {
    const row = this.db.prepare('SELECT id, name, created_at, last_used_at FROM tokens WHERE sha256 = ?').get(tokenHash(token)) as TokenRow | undefined;
    if (!row) return undefined;
    if (row.last_used_at === null || nowMs - row.last_used_at >= lastUsedResolutionMs) {
      this.db.prepare('UPDATE tokens SET last_used_at = ? WHERE id = ?').run(nowMs, row.id);
      row.last_used_at = nowMs;
    }
    return tokenFromRow(row);
  }

  private token(id: string): TokenRecord | undefined {
    const row = this.db.prepare('SELECT id, name, created_at, last_used_at FROM tokens WHERE id = ?').get(id) as TokenRow | undefined;
    return row && tokenFromRow(row);
  }

  // Hosts

  createHost(input: HostInput): HostRecord {
    const id = newId('host');
    this.insert(`a host named ${JSON.stringify(input.name)}`, () =>
      this.db
        .prepare('INSERT INTO hosts (id, name, role, agent_url, agent_fingerprint, agent_token, inventory, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)')
        .run(id, input.name, input.role, input.agent.url, input.agent.fingerprint, input.agent.token, input.inventory ? JSON.stringify(input.inventory) : null, Date.now()),
    );
    return this.getHost(id);
  }

  listHosts(): HostRecord[] {
    return (this.db.prepare('SELECT * FROM hosts ORDER BY created_at, name').all() as HostRow[]).map(hostFromRow);
  }

  findHost(id: string): HostRecord | undefined {
    const row = this.db.prepare('SELECT * FROM hosts WHERE id = ?').get(id) as HostRow | undefined;
    return row && hostFromRow(row);
  }

  getHost(id: string): HostRecord {
    const host = this.findHost(id);
    if (!host) throw new FerryError('not-found', `no host ${JSON.stringify(id)}`);
    return host;
  }

  /** Points a host at its agent again (the service's local agent, moved). */
  setHostAgent(id: string, agent: HostInput['agent']): void {
    this.db.prepare('UPDATE hosts SET agent_url = ?, agent_fingerprint = ?, agent_token = ? WHERE id = ?').run(agent.url, agent.fingerprint, agent.token, id);
  }

  /** Replaces a host's inventory (as its agent reported it). */
  setInventory(id: string, inventory: HostInventory): HostRecord {
    this.getHost(id);
    this.db.prepare('UPDATE hosts SET inventory = ? WHERE id = ?').run(JSON.stringify(inventory), id);
    return this.getHost(id);
  }

  /** Removes a host that no migration names. */
  deleteHost(id: string): void {
    const host = this.getHost(id);
    const users = this.db.prepare('SELECT id, state FROM migrations WHERE source_host = ? OR destination_host = ? ORDER BY created_at').all(id, id) as Array<{ id: string; state: string }>;
    if (users.length > 0) throw new FerryError('conflict', `host ${JSON.stringify(host.name)} (${id}) is used by ${describeUsers(users)}`);
    this.db.prepare('DELETE FROM hosts WHERE id = ?').run(id);
  }

  // Stores

  createStore(input: StoreInput): StoreRecord {
    const id = newId('store');
    this.insert(`a store named ${JSON.stringify(input.name)}`, () =>
      this.db.prepare('INSERT INTO stores (id, name, url, s3, created_at) VALUES (?, ?, ?, ?, ?)').run(id, input.name, input.url, input.s3 ? JSON.stringify(input.s3) : null, Date.now()),
    );
    return this.getStore(id);
  }

  listStores(): StoreRecord[] {
    return (this.db.prepare('SELECT * FROM stores ORDER BY created_at, name').all() as StoreRow[]).map(storeFromRow);
  }

  findStore(id: string): StoreRecord | undefined {
    const row = this.db.prepare('SELECT * FROM stores WHERE id = ?').get(id) as StoreRow | undefined;
    return row && storeFromRow(row);
  }

  getStore(id: string): StoreRecord {
    const store = this.findStore(id);
    if (!store) throw new FerryError('not-found', `no store ${JSON.stringify(id)}`);
    return store;
  }

  recordStoreCheck(id: string, check: StoreCheck): StoreRecord {
    this.getStore(id);
    this.db.prepare('UPDATE stores SET last_check = ? WHERE id = ?').run(JSON.stringify(check), id);
    return this.getStore(id);
  }

  /** Removes a store that no migration names. */
  deleteStore(id: string): void {
    const store = this.getStore(id);
    const users = this.db.prepare('SELECT id, state FROM migrations WHERE store = ? ORDER BY created_at').all(id) as Array<{ id: string; state: string }>;
    if (users.length > 0) throw new FerryError('conflict', `store ${JSON.stringify(store.name)} (${id}) is used by ${describeUsers(users)}`);
    this.db.prepare('DELETE FROM stores WHERE id = ?').run(id);
  }

  // Migrations

  /** Records a new migration as a draft, with its first event. */
  createMigration(input: MigrationInput): MigrationRecord {
    const id = newId('mig');
    const now = Date.now();
    const disks = input.settings.vms.reduce((n, vm) => n + vm.disks.length, 0);
    this.db.transaction(() => {
      this.db
        .prepare('INSERT INTO migrations (id, name, state, source_host, destination_host, store, settings, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)')
        .run(id, input.name, 'draft', input.sourceHost, input.destinationHost, input.store, JSON.stringify(input.settings), now, now);
      this.addEvent(id, `created as a draft: ${input.settings.vms.length} VM(s), ${disks} disk(s), transport ${input.settings.transport.mode}`, now);
    })();
    return this.getMigration(id);
  }

  /** Migrations, newest first. */
  listMigrations(): MigrationRecord[] {
    return (this.db.prepare('SELECT * FROM migrations ORDER BY created_at DESC, id').all() as MigrationRow[]).map(migrationFromRow);
  }

  getMigration(id: string): MigrationRecord {
    const row = this.db.prepare('SELECT * FROM migrations WHERE id = ?').get(id) as MigrationRow | undefined;
    if (!row) throw new FerryError('not-found', `no migration ${JSON.stringify(id)}`);
    return migrationFromRow(row);
  }

  /** Persists a change of state and its event, together. */
  transition(id: string, state: MigrationState, message: string, error?: string): MigrationRecord {
    this.db.transaction(() => {
      const now = Date.now();
      const changed = this.db.prepare('UPDATE migrations SET state = ?, updated_at = ?, error = COALESCE(?, error) WHERE id = ?').run(state, now, error ?? null, id);
      if (changed.changes === 0) throw new FerryError('not-found', `no migration ${JSON.stringify(id)}`);
      this.addEvent(id, message, now);
    })();
    return this.getMigration(id);
  }

  /** Replaces a migration's settings, with an event saying what changed. */
  updateSettings(id: string, settings: MigrationSettings, message: string): MigrationRecord {
    this.db.transaction(() => {
      const now = Date.now();
      const changed = this.db.prepare('UPDATE migrations SET settings = ?, updated_at = ? WHERE id = ?').run(JSON.stringify(settings), now, id);
      if (changed.changes === 0) throw new FerryError('not-found', `no migration ${JSON.stringify(id)}`);
      this.addEvent(id, message, now);
    })();
    return this.getMigration(id);
  }

  /** Starts a validated migration: its disks' rows, and the state 'copying'. */
  startMigration(id: string): MigrationRecord {
    const migration = this.getMigration(id);
    this.db.transaction(() => {
      const insert = this.db.prepare('INSERT INTO migration_disks (migration_id, vm, disk, replica_id) VALUES (?, ?, ?, ?)');
      for (const vm of migration.settings.vms) for (const disk of vm.disks) insert.run(id, vm.name, disk.id, `${id}.${disk.id}`);
      this.transition(id, 'copying', 'started: base copies of every disk at the source host');
    })();
    return this.getMigration(id);
  }

  migrationDisks(id: string): MigrationDiskProgress[] {
    const rows = this.db.prepare('SELECT vm, disk, manifest, replica_id, replica_path FROM migration_disks WHERE migration_id = ? ORDER BY rowid').all(id) as Array<{
      vm: string;
      disk: string;
      manifest: string | null;
      replica_id: string;
      replica_path: string | null;
    }>;
    return rows.map((r) => ({ vm: r.vm, disk: r.disk, replicaId: r.replica_id, ...(r.manifest ? { manifestId: r.manifest } : {}), ...(r.replica_path ? { replicaPath: r.replica_path } : {}) }));
  }

  /** Records a disk's base copy, or its replica's path, as the agents reported them. */
  updateMigrationDisk(id: string, disk: string, fields: { manifestId?: string; replicaPath?: string }): void {
    this.db
      .prepare('UPDATE migration_disks SET manifest = COALESCE(?, manifest), replica_path = COALESCE(?, replica_path) WHERE migration_id = ? AND disk = ?')
      .run(fields.manifestId ?? null, fields.replicaPath ?? null, id, disk);
  }

  /** The operator asks for the cutover: with `at`, not before then; `hold`: wait for the go. */
  requestCutover(id: string, cutover: { at?: string; hold?: boolean; verify?: 'deltas' | 'full' }): MigrationRecord {
    const migration = this.getMigration(id);
    const settings = { ...migration.settings, cutover: { ...migration.settings.cutover, ...cutover } };
    this.db.transaction(() => {
      this.db.prepare('UPDATE migrations SET settings = ?, cutover_requested = 1, updated_at = ? WHERE id = ?').run(JSON.stringify(settings), Date.now(), id);
      this.addEvent(id, `cutover requested${cutover.at ? ` for ${cutover.at}` : ''}${settings.cutover.hold ? ', held for the go' : ''}`);
    })();
    return this.getMigration(id);
  }

  /** Records how far a migration's seed is, with its event. */
  updateSeed(id: string, seed: SeedProgress, message: string): MigrationRecord {
    this.db.transaction(() => {
      this.db.prepare('UPDATE migrations SET seed = ?, updated_at = ? WHERE id = ?').run(JSON.stringify({ ...this.getMigration(id).seed, ...seed }), Date.now(), id);
      this.addEvent(id, message);
    })();
    return this.getMigration(id);
  }

  /** Pauses a migration (or lets it go on), with its event. */
  setPaused(id: string, paused: boolean, message: string): MigrationRecord {
    this.db.transaction(() => {
      this.db.prepare('UPDATE migrations SET paused = ?, updated_at = ? WHERE id = ?').run(paused ? 1 : 0, Date.now(), id);
      this.addEvent(id, message);
    })();
    return this.getMigration(id);
  }

  /** Ties a migration to the cutover that moves it, and says it is cutting over. */
  beginCutover(id: string, cutoverId: string): MigrationRecord {
    this.db.transaction(() => {
      this.db.prepare('UPDATE migrations SET cutover_id = ? WHERE id = ?').run(cutoverId, id);
      this.transition(id, 'cutting over', `cutover ${cutoverId} begun`);
    })();
    return this.getMigration(id);
  }

  /** A cutover that rolled back: the migration is ready again, and a new cutover must be asked for. */
  cutoverRolledBack(id: string, message: string): MigrationRecord {
    this.db.transaction(() => {
      this.db.prepare('UPDATE migrations SET cutover_requested = 0 WHERE id = ?').run(id);
      this.transition(id, 'ready', message, message);
    })();
    return this.getMigration(id);
  }

  /** Notes something that happened to a migration. */
  addEvent(id: string, message: string, atMs = Date.now()): void {
    this.db.prepare('INSERT INTO migration_events (migration_id, at, message) VALUES (?, ?, ?)').run(id, atMs, message);
  }

  /** A migration's events in order; `afterSeq` keeps the ones after that seq (for polling). */
  events(id: string, afterSeq = 0): MigrationEvent[] {
    this.getMigration(id);
    const rows = this.db.prepare('SELECT seq, at, message FROM migration_events WHERE migration_id = ? AND seq > ? ORDER BY seq').all(id, afterSeq) as Array<{ seq: number; at: number; message: string }>;
    return rows.map((r) => ({ seq: r.seq, atMs: r.at, message: r.message }));
  }

  /** Runs an INSERT, turning a clash of unique names into a 'conflict'. */
  private insert(what: string, run: () => void): void {
    try {
      run();
    } catch (err) {
      if ((err as { code?: string }).code === 'SQLITE_CONSTRAINT_UNIQUE') throw new FerryError('conflict', `${what} exists already`, { cause: err });
      throw err;
    }
  }
}

function newId(kind: string): string {
  return `${kind}-${randomBytes(5).toString('hex')}`;
}

function describeUsers(users: Array<{ id: string; state: string }>): string {
  const listed = users.slice(0, 5).map((u) => `${u.id} (${u.state})`);
  return `migration${users.length === 1 ? '' : 's'} ${listed.join(', ')}${users.length > 5 ? ` and ${users.length - 5} more` : ''}`;
}

function tokenFromRow(row: TokenRow): TokenRecord {
  return { id: row.id, name: row.name, createdAtMs: row.created_at, ...(row.last_used_at !== null ? { lastUsedAtMs: row.last_used_at } : {}) };
}

function hostFromRow(row: HostRow): HostRecord {
  return {
    id: row.id,
    name: row.name,
    role: row.role,
    agent: { url: row.agent_url, fingerprint: row.agent_fingerprint, token: row.agent_token },
    ...(row.inventory !== null ? { inventory: JSON.parse(row.inventory) as HostInventory } : {}),
    createdAtMs: row.created_at,
  };
}

function storeFromRow(row: StoreRow): StoreRecord {
  return {
    id: row.id,
    name: row.name,
    url: row.url,
    ...(row.s3 !== null ? { s3: JSON.parse(row.s3) as StoreInput['s3'] } : {}),
    createdAtMs: row.created_at,
    ...(row.last_check !== null ? { lastCheck: JSON.parse(row.last_check) as StoreCheck } : {}),
  };
}

function migrationFromRow(row: MigrationRow): MigrationRecord {
  return {
    id: row.id,
    name: row.name,
    state: row.state,
    sourceHost: row.source_host,
    destinationHost: row.destination_host,
    store: row.store,
    settings: JSON.parse(row.settings) as MigrationSettings,
    createdAtMs: row.created_at,
    updatedAtMs: row.updated_at,
    ...(row.error !== null ? { error: row.error } : {}),
    ...(row.cutover_id !== null ? { cutoverId: row.cutover_id } : {}),
    cutoverRequested: row.cutover_requested === 1,
    paused: row.paused === 1,
    ...(row.seed !== null ? { seed: JSON.parse(row.seed) as SeedProgress } : {}),
  };
}
