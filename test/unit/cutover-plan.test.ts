import { describe, expect, it } from 'vitest';
import { parsePlan, type CutoverPlan } from '../../src/cutover/index.js';

/** A valid plan of two VMs (one with two disks), as the README shows. */
function validPlan(): Record<string, unknown> {
  return {
    version: 1,
    name: 'shop',
    store: 'file:/srv/store',
    vms: [
      {
        name: 'db',
        disks: [
          { id: 'db-root', control: '/run/f.sock', replica: '/dest/db-root.img' },
          { id: 'db-data', control: '/run/f.sock', replica: '/dest/db-data.img', store: 'file:/other' },
        ],
        source: { driver: 'qemu', qmp: '/run/db.qmp' },
        destination: { driver: 'qemu', runDir: '/dest/run/db', launch: { kernel: '/k', initrd: '/i', append: 'console=ttyS0', memoryMiB: 256 } },
        health: { console: 'verify OK', timeout: '90s' },
      },
      {
        name: 'app',
        disks: [{ id: 'app-root', control: '/run/f.sock', replica: '/dest/app-root.img' }],
        source: { driver: 'hooks', commands: { pause: ['p'], resume: ['r'], stop: ['s'], status: ['q'] } },
        destination: { driver: 'hooks', commands: { start: ['st'], stop: ['s'], status: ['q'] } },
      },
    ],
    runbook: { boot: [{ vms: ['db'], delay: '2s' }, { vms: ['app'] }] },
    schedule: { at: '2026-12-06T22:00:00Z', window: '10m', budget: '500ms', hold: true, verify: 'full' },
  };
}

function problems(plan: unknown): string {
  try {
    parsePlan(JSON.stringify(plan), 'plan.json');
  } catch (err) {
    expect(err).toMatchObject({ code: 'bad-input' });
    return (err as Error).message;
  }
  throw new Error('the plan was accepted');
}

describe('cutover plan', () => {
  it('reads a valid plan, with defaults and the plan-wide store', () => {
    const plan: CutoverPlan = parsePlan(JSON.stringify(validPlan()));
    expect(plan.vms.map((vm) => vm.disks.map((d) => d.store))).toEqual([['file:/srv/store', 'file:/other'], ['file:/srv/store']]);
    expect(plan.runbook).toEqual({ boot: [{ vms: ['db'], delayMs: 2000 }, { vms: ['app'], delayMs: 0 }], onFailure: 'stop' });
    expect(plan.schedule).toMatchObject({ atMs: Date.parse('2026-12-06T22:00:00Z'), windowMs: 600_000, budgetMs: 500, hold: true, verify: 'full', leaseMs: 30_000 });
    expect(plan.vms[0]!.health).toEqual({ console: 'verify OK', timeoutMs: 90_000 });
    expect(plan.vms[1]!.health.timeoutMs).toBe(120_000);
  });

  it('without a runbook, boots every VM in one step', () => {
    const raw = validPlan();
    delete raw.runbook;
    expect(parsePlan(JSON.stringify(raw)).runbook.boot).toEqual([{ vms: ['db', 'app'], delayMs: 0 }]);
  });

  it('names every wrong field and the value it received, all at once', () => {
    const raw = validPlan() as { vms: Array<Record<string, unknown>>; schedule: Record<string, unknown>; version: unknown };
    raw.version = 2;
    (raw.vms[0]!.disks as Array<Record<string, unknown>>)[1]!.replica = 42;
    raw.vms[1]!.destination = { driver: 'xen' };
    raw.schedule.budget = 'fast';
    raw.schedule.colour = 'blue';
    const message = problems(raw);
    expect(message).toContain('plan.json is not a valid cutover plan');
    expect(message).toContain('version: expected 1, received 2');
    expect(message).toContain('vms[0].disks[1].replica: expected a non-empty string, received 42');
    expect(message).toContain('vms[1].destination.driver: expected "qemu" or "hooks", received "xen"');
    expect(message).toContain('schedule.budget: expected a duration such as "500ms", "30s", "10m", received "fast"');
    expect(message).toContain('schedule.colour: unknown field');
  });

  it('refuses a plan whose runbook or disks do not add up', () => {
    const raw = validPlan() as { vms: Array<Record<string, unknown>>; runbook: unknown };
    raw.runbook = { boot: [{ vms: ['db', 'web'] }] };
    (raw.vms[1]!.disks as Array<Record<string, unknown>>)[0]!.replica = '/dest/db-root.img';
    const message = problems(raw);
    expect(message).toContain('runbook.boot[0].vms[1]: expected one of the plan\'s VMs (db, app), received "web"');
    expect(message).toContain('runbook.boot: VM "app" is in no boot step');
    expect(message).toContain('vms: replica /dest/db-root.img appears twice');
  });

  it('asks for the commands each side needs, and a QMP socket at the source', () => {
    const raw = validPlan() as { vms: Array<Record<string, unknown>> };
    raw.vms[1]!.source = { driver: 'hooks', commands: { pause: ['p'] } };
    raw.vms[0]!.source = { driver: 'qemu' };
    const message = problems(raw);
    expect(message).toContain('vms[1].source.commands.resume: expected a command (the source needs it), received nothing');
    expect(message).toContain('vms[0].source.qmp: expected a non-empty string, received nothing');
  });

  it('refuses text that is not JSON, naming the file', () => {
    expect(() => parsePlan('{ "version": 1,', 'p.json')).toThrow(expect.objectContaining({ code: 'bad-input', message: expect.stringContaining('p.json: not valid JSON') }));
  });
});
