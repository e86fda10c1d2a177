/**
 * What the cutover coordinator persists, in SQLite (docs/FORMAT.md, "Cutover database"):
 * one row per cutover with its plan and state, one per VM and per disk with what was done
 * to them, and an event log. Every transition is written (and synced) before the
 * coordinator acts on it, so a coordinator killed at any point and started again knows
 * where it was: before `committed` it rolls back, from `committed` on it rolls forward.
 *
 * The operator's `go` and `cancel` are flags on the row, set by another process.
 */
import { randomBytes } from 'node:crypto';
import { FerryError, migrateSchema, type Database } from '../core/index.js';
import type { CutoverPlan } from './plan.js';

/** The states of a cutover, in order; `rolled back` and `failed` end it early. */
export const cutoverStates = [
  'planned',
  'waiting',
  'pre-checks',
  'held',
  'pausing',
  'draining',
  'applying',
  'verifying',
  'committed',
  'starting',
  'running',
  'healthy',
  'rolled back',
  'failed',
] as const;
export type CutoverState = (typeof cutoverStates)[number];

/** States after which nothing more happens. */
export const finalStates: readonly CutoverState[] = ['healthy', 'rolled back', 'failed'];

/** Whether the commit point has been passed: from here the cutover only rolls forward. */
export function isCommitted(state: CutoverState): boolean {
  return cutoverStates.indexOf(state) >= cutoverStates.indexOf('committed') && state !== 'rolled back' && state !== 'failed';
}

export type VmProgress = 'at source' | 'paused' | 'source stopped' | 'starting' | 'running' | 'healthy' | 'failed';

export interface VmRecord {
  vm: string;
  progress: VmProgress;
  /** Source paused (ms since the epoch): downtime starts here. */
  pausedAtMs?: number;
  /** A start was asked of the destination's hypervisor: never ask twice without checking. */
  startRequested: boolean;
  runningAtMs?: number;
  healthyAtMs?: number;
  error?: string;
}

export interface DiskRecord {
  vm: string;
  disk: string;
  replication?: string;
  finalSeq?: number;
  verified?: 'full' | 'deltas';
  /** verify 'full': the SHA-256 both the source and the replica had at the pause. */
  sha256?: string;
  fenced: boolean;
  /** Bytes the final drain shipped for this disk. */
  finalBytes?: number;
}

export interface CutoverRecord {
  id: string;
  plan: CutoverPlan;
  state: CutoverState;
  createdAtMs: number;
  updatedAtMs: number;
  go: boolean;
  cancel: boolean;
  /** Why it rolled back or failed. */
  error?: string;
  /** Bumped by every coordinator run: names the quiesce owner of that run. */
  runs: number;
}

export interface CutoverEvent {
  atMs: number;
  state: CutoverState;
  message: string;
}

const schema = [
  `CREATE TABLE cutovers (
     id TEXT PRIMARY KEY,
     plan_name TEXT NOT NULL,
     plan TEXT NOT NULL,
     state TEXT NOT NULL,
     created_at INTEGER NOT NULL,
     updated_at INTEGER NOT NULL,
     go INTEGER NOT NULL DEFAULT 0,
     cancel INTEGER NOT NULL DEFAULT 0,
     error TEXT,
     runs INTEGER NOT NULL DEFAULT 0
   );
   CREATE TABLE cutover_vms (
     cutover_id TEXT NOT NULL REFERENCES cutovers (id),
     vm TEXT NOT NULL,
     progress TEXT NOT NULL,
     paused_at INTEGER,
     start_requested INTEGER NOT NULL DEFAULT 0,
     running_at INTEGER,
     healthy_at INTEGER,
     error TEXT,
     PRIMARY KEY (cutover_id, vm)
   );
   CREATE TABLE cutover_disks (
     cutover_id TEXT NOT NULL REFERENCES cutovers (id),
     vm TEXT NOT NULL,
     disk TEXT NOT NULL,
     replication TEXT,
     final_seq INTEGER,
     verified TEXT,
     sha256 TEXT,
     fenced INTEGER NOT NULL DEFAULT 0,
     final_bytes INTEGER,
     PRIMARY KEY (cutover_id, vm, disk)
   );
   CREATE TABLE cutover_events (
     seq INTEGER PRIMARY KEY AUTOINCREMENT,
     cutover_id TEXT NOT NULL REFERENCES cutovers (id),
     at INTEGER NOT NULL,
     state TEXT NOT NULL,
     message TEXT NOT NULL
   );`,
];

interface CutoverRow {
  id: string;
  plan: string;
  state: CutoverState;
  created_at: number;
  updated_at: number;
  go: number;
  cancel: number;
  error: string | null;
  runs: number;
}

export class CutoverRecords {
  constructor(private readonly db: Database) {
    migrateSchema(db, 'cutover', schema);
  }

  create(plan: CutoverPlan): CutoverRecord {
    const id = `${plan.name}-${new Date().toISOString().slice(0, 10).replaceAll('-', '')}-${randomBytes(3).toString('hex')}`;
    const now = Date.now();
    this.db.transaction(() => {
      this.db
        .prepare('INSERT INTO cutovers (id, plan_name, plan, state, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)')
        .run(id, plan.name, JSON.stringify(plan), 'planned', now, now);
      for (const vm of plan.vms) {
        this.db.prepare('INSERT INTO cutover_vms (cutover_id, vm, progress) VALUES (?, ?, ?)').run(id, vm.name, 'at source');
        for (const disk of vm.disks) this.db.prepare('INSERT INTO cutover_disks (cutover_id, vm, disk) VALUES (?, ?, ?)').run(id, vm.name, disk.id);
      }
      this.addEvent(id, 'planned', `plan ${plan.name}: ${plan.vms.length} VM(s), ${plan.vms.reduce((n, vm) => n + vm.disks.length, 0)} disk(s)`);
    })();
    return this.get(id);
  }

  get(id: string): CutoverRecord {
    const row = this.db.prepare('SELECT * FROM cutovers WHERE id = ?').get(id) as CutoverRow | undefined;
    if (!row) throw new FerryError('not-found', `no cutover ${JSON.stringify(id)} in the database`);
    return fromRow(row);
  }

  /** Cutovers, newest first; `unfinished` keeps those not in a final state. */
  list(options: { unfinished?: boolean; planName?: string } = {}): CutoverRecord[] {
    const rows = this.db.prepare('SELECT * FROM cutovers ORDER BY created_at DESC, id').all() as CutoverRow[];
    return rows
      .map(fromRow)
      .filter((r) => (!options.unfinished || !finalStates.includes(r.state)) && (options.planName === undefined || r.plan.name === options.planName));
  }

  /** Persists a transition (and its event) before the caller acts on it. */
  transition(id: string, state: CutoverState, message: string, error?: string): void {
    this.db.transaction(() => {
      this.db.prepare('UPDATE cutovers SET state = ?, updated_at = ?, error = COALESCE(?, error) WHERE id = ?').run(state, Date.now(), error ?? null, id);
      this.addEvent(id, state, message);
    })();
  }

  /** Notes something that happened without a change of state. */
  note(id: string, message: string): void {
    this.addEvent(id, this.get(id).state, message);
  }

  /** A coordinator starts (or restarts) working on the cutover; returns its run number. */
  beginRun(id: string): number {
    this.db.prepare('UPDATE cutovers SET runs = runs + 1, updated_at = ? WHERE id = ?').run(Date.now(), id);
    return this.get(id).runs;
  }

  requestGo(id: string): void {
    this.db.prepare('UPDATE cutovers SET go = 1, updated_at = ? WHERE id = ?').run(Date.now(), id);
  }

  requestCancel(id: string): void {
    this.db.prepare('UPDATE cutovers SET cancel = 1, updated_at = ? WHERE id = ?').run(Date.now(), id);
  }

  vms(id: string): VmRecord[] {
    const rows = this.db.prepare('SELECT * FROM cutover_vms WHERE cutover_id = ? ORDER BY rowid').all(id) as Array<Record<string, unknown>>;
    return rows.map((r) => ({
      vm: r.vm as string,
      progress: r.progress as VmProgress,
      startRequested: r.start_requested === 1,
      ...(r.paused_at !== null ? { pausedAtMs: r.paused_at as number } : {}),
      ...(r.running_at !== null ? { runningAtMs: r.running_at as number } : {}),
      ...(r.healthy_at !== null ? { healthyAtMs: r.healthy_at as number } : {}),
      ...(r.error !== null ? { error: r.error as string } : {}),
    }));
  }

  updateVm(id: string, vm: string, fields: Partial<Omit<VmRecord, 'vm'>>): void {
    const columns: Record<string, unknown> = {
      progress: fields.progress,
      paused_at: fields.pausedAtMs,
      start_requested: fields.startRequested === undefined ? undefined : fields.startRequested ? 1 : 0,
      running_at: fields.runningAtMs,
      healthy_at: fields.healthyAtMs,
      error: fields.error,
    };
    this.update('cutover_vms', columns, 'cutover_id = ? AND vm = ?', [id, vm]);
  }

  disks(id: string): DiskRecord[] {
    const rows = this.db.prepare('SELECT * FROM cutover_disks WHERE cutover_id = ? ORDER BY rowid').all(id) as Array<Record<string, unknown>>;
    return rows.map((r) => ({
      vm: r.vm as string,
      disk: r.disk as string,
      fenced: r.fenced === 1,
      ...(r.replication !== null ? { replication: r.replication as string } : {}),
      ...(r.final_seq !== null ? { finalSeq: r.final_seq as number } : {}),
      ...(r.verified !== null ? { verified: r.verified as 'full' | 'deltas' } : {}),
      ...(r.sha256 !== null ? { sha256: r.sha256 as string } : {}),
      ...(r.final_bytes !== null ? { finalBytes: r.final_bytes as number } : {}),
    }));
  }

  updateDisk(id: string, vm: string, disk: string, fields: Partial<Omit<DiskRecord, 'vm' | 'disk'>>): void {
    const columns: Record<string, unknown> = {
      replication: fields.replication,
      final_seq: fields.finalSeq,
      verified: fields.verified,
      sha256: fields.sha256,
      fenced: fields.fenced === undefined ? undefined : fields.fenced ? 1 : 0,
      final_bytes: fields.finalBytes,
    };
    this.update('cutover_disks', columns, 'cutover_id = ? AND vm = ? AND disk = ?', [id, vm, disk]);
  }

  events(id: string): CutoverEvent[] {
    const rows = this.db.prepare('SELECT at, state, message FROM cutover_events WHERE cutover_id = ? ORDER BY seq').all(id) as Array<{ at: number; state: CutoverState; message: string }>;
    return rows.map((r) => ({ atMs: r.at, state: r.state, message: r.message }));
  }

  private update(table: string, columns: Record<string, unknown>, where: string, keys: unknown[]): void {
    const set = Object.entries(columns).filter(([, v]) => v !== undefined);
    if (set.length === 0) return;
    this.db.prepare(`UPDATE ${table} SET ${set.map(([c]) => `${c} = ?`).join(', ')} WHERE ${where}`).run(...set.map(([, v]) => v), ...keys);
  }

  private addEvent(id: string, state: CutoverState, message: string): void {
    this.db.prepare('INSERT INTO cutover_events (cutover_id, at, state, message) VALUES (?, ?, ?, ?)').run(id, Date.now(), state, message);
  }
}

function fromRow(row: CutoverRow): CutoverRecord {
  return {
    id: row.id,
    plan: JSON.parse(row.plan) as CutoverPlan,
    state: row.state,
    createdAtMs: row.created_at,
    updatedAtMs: row.updated_at,
    go: row.go === 1,
    cancel: row.cancel === 1,
    runs: row.runs,
    ...(row.error !== null ? { error: row.error } : {}),
  };
}
