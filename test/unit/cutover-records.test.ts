import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase } from '../../src/core/index.js';
import { CutoverRecords, isCommitted, parsePlan } from '../../src/cutover/index.js';
import { tempDir } from '../support/temp.js';

const plan = parsePlan(
  JSON.stringify({
    version: 1,
    name: 'pair',
    store: 'file:/s',
    vms: ['a', 'b'].map((name) => ({
      name,
      disks: [{ id: `${name}0`, control: '/c', replica: `/r/${name}0` }],
      source: { driver: 'qemu', qmp: `/q/${name}` },
      destination: { driver: 'qemu', runDir: `/d/${name}`, launch: { kernel: '/k' } },
    })),
  }),
);

let dir: Awaited<ReturnType<typeof tempDir>>;
beforeAll(async () => {
  dir = await tempDir('cutover-records');
});
afterAll(async () => {
  await dir.cleanup();
});

describe('cutover records', () => {
  it('keeps a cutover, its VMs, disks and events across connections (another process sees them)', () => {
    const path = join(dir.path, 'a.db');
    const first = openDatabase(path);
    const records = new CutoverRecords(first);
    const { id } = records.create(plan);
    records.transition(id, 'pre-checks', 'checking');
    records.updateVm(id, 'a', { progress: 'paused', pausedAtMs: 1000 });
    records.updateDisk(id, 'b', 'b0', { finalSeq: 77, replication: 'f'.repeat(32) });
    records.requestGo(id);

    const second = new CutoverRecords(openDatabase(path));
    const record = second.get(id);
    expect(record).toMatchObject({ id, state: 'pre-checks', go: true, cancel: false, runs: 0 });
    expect(record.plan).toEqual(plan);
    expect(second.vms(id)).toEqual([
      { vm: 'a', progress: 'paused', pausedAtMs: 1000, startRequested: false },
      { vm: 'b', progress: 'at source', startRequested: false },
    ]);
    expect(second.disks(id)).toEqual([
      { vm: 'a', disk: 'a0', fenced: false },
      { vm: 'b', disk: 'b0', fenced: false, finalSeq: 77, replication: 'f'.repeat(32) },
    ]);
    expect(second.events(id).map((e) => e.state)).toEqual(['planned', 'pre-checks']);
    expect(second.list({ unfinished: true, planName: 'pair' }).map((r) => r.id)).toEqual([id]);
    records.transition(id, 'rolled back', 'cancelled', 'cancelled by the operator');
    expect(second.list({ unfinished: true })).toEqual([]);
    expect(second.get(id).error).toBe('cancelled by the operator');
    first.close();
  });

  it('counts coordinator runs, and knows the commit point', () => {
    const records = new CutoverRecords(openDatabase(join(dir.path, 'b.db')));
    const { id } = records.create(plan);
    expect([records.beginRun(id), records.beginRun(id)]).toEqual([1, 2]);
    expect(['verifying', 'committed', 'starting', 'healthy', 'rolled back', 'failed'].map((s) => isCommitted(s as never))).toEqual([false, true, true, true, false, false]);
  });

  it('refuses a database whose cutover tables are newer than this ferry', () => {
    const path = join(dir.path, 'c.db');
    const db = openDatabase(path);
    new CutoverRecords(db);
    db.prepare("UPDATE schema_versions SET version = 9 WHERE component = 'cutover'").run();
    expect(() => new CutoverRecords(db)).toThrow(expect.objectContaining({ code: 'unsupported-version', message: expect.stringContaining('version 9') }));
  });

  it('names an unknown cutover', () => {
    const records = new CutoverRecords(openDatabase(join(dir.path, 'd.db')));
    expect(() => records.get('nope')).toThrow(expect.objectContaining({ code: 'not-found', message: expect.stringContaining('"nope"') }));
  });
});
