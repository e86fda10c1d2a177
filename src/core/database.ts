/**
 * The SQLite database ferry keeps its state in (better-sqlite3): cutovers today, the
 * migration service's tables next to them. WAL mode, `synchronous = FULL` (a committed
 * transaction survives a power cut: a state transition is persisted before it is acted
 * on), foreign keys on, and a busy timeout so that a second process (`ferry cutover go`
 * beside a running coordinator) waits for a write lock rather than failing.
 *
 * Each part of ferry owns its tables and brings its schema as numbered steps;
 * `migrateSchema` applies the steps a database has not seen yet, once each, recorded in
 * `schema_versions`.
 *
 * The database holds secrets (the service's agent tokens), so it is private to its user: a
 * new directory is made with mode 0700, and the file (with its WAL and shared-memory files,
 * which SQLite creates with the database file's mode) is kept at 0600.
 */
import { chmodSync, closeSync, openSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { makeDirectorySync } from './directory.js';
import { FerryError } from './errors.js';

export type Database = BetterSqlite3.Database;

export function openDatabase(path: string): Database {
  if (path !== ':memory:') {
    makeDirectorySync(dirname(path), 0o700);
    makePrivate(path);
  }
  let db: Database;
  try {
    db = new BetterSqlite3(path);
  } catch (err) {
    throw new FerryError('io', `cannot open the database ${path}: ${(err as Error).message}`, { cause: err });
  }
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.pragma('foreign_keys = ON');
  db.pragma('busy_timeout = 10000');
  return db;
}

/** Creates the file with mode 0600 if it is missing; takes group and other access away from an existing one. */
function makePrivate(path: string): void {
  try {
    closeSync(openSync(path, 'a', 0o600));
    for (const file of [path, `${path}-wal`, `${path}-shm`]) {
      const mode = statSync(file, { throwIfNoEntry: false })?.mode;
      if (mode !== undefined && (mode & 0o077) !== 0) chmodSync(file, mode & 0o700);
    }
  } catch (err) {
    throw new FerryError('io', `cannot make the database ${path} private (mode 0600): ${(err as Error).message}`, { cause: err });
  }
}

/** Brings `component`'s tables up to `steps.length`: step i (SQL) runs once, in a transaction. */
export function migrateSchema(db: Database, component: string, steps: readonly string[]): void {
  db.exec('CREATE TABLE IF NOT EXISTS schema_versions (component TEXT PRIMARY KEY, version INTEGER NOT NULL)');
  const row = db.prepare('SELECT version FROM schema_versions WHERE component = ?').get(component) as { version: number } | undefined;
  const version = row?.version ?? 0;
  if (version > steps.length) {
    throw new FerryError('unsupported-version', `the database's ${component} tables are at version ${version}; this ferry knows up to ${steps.length}`);
  }
  for (let i = version; i < steps.length; i++) {
    db.transaction(() => {
      db.exec(steps[i]!);
      db.prepare('INSERT INTO schema_versions (component, version) VALUES (?, ?) ON CONFLICT (component) DO UPDATE SET version = excluded.version').run(component, i + 1);
    })();
  }
}
