/**
 * The VMs of an agent's host, as routes of its control API: the migration service's
 * cutover drives each side's hypervisor through the agent of that side's host. The request
 * carries the VM's side as the plan gives it (docs/FORMAT.md, cutover plan: `source` or
 * `destination`), checked here as the plan is; the driver acts on this host.
 *
 *   POST /v1/vms/:name/:action   { side, spec, disks?, health? }
 *        action: status -> { state, detail }; check, start, pause, resume, stop, health -> { ok: true }
 *        disks: the replica files the destination VM boots from (qemu); health: { console?,
 *        command?, timeoutMs } for the health action
 */
import type { Hono } from 'hono';
import { FerryError, Logger, badInput } from '../core/index.js';
import { createVmDriver, parseSideSpec, type HealthCheck, type VmPlan } from '../cutover/index.js';
import { jsonBody, optionalInt } from './request-fields.js';

const actions = ['status', 'check', 'start', 'pause', 'resume', 'stop', 'health'] as const;
type VmAction = (typeof actions)[number];

/** `env`: the environment of hook commands (the agent's own). */
export function mountVmRoutes(app: Hono, options: { logger?: Logger; env?: NodeJS.ProcessEnv } = {}): void {
  const logger = options.logger ?? Logger.silent();
  app.post('/v1/vms/:name/:action', async (c) => {
    const name = c.req.param('name');
    const action = c.req.param('action') as VmAction;
    if (!actions.includes(action)) throw new FerryError('not-found', `no VM action ${JSON.stringify(action)}; expected one of ${actions.join(', ')}`);
    const body = await jsonBody(c);
    const side = body.side;
    if (side !== 'source' && side !== 'destination') throw badInput('side', side, '"source" or "destination"');
    const spec = parseSideSpec(body.spec, side, 'spec');
    const disks = body.disks ?? [];
    if (!Array.isArray(disks) || !disks.every((d) => typeof d === 'string' && d.startsWith('/'))) throw badInput('disks', disks, 'a list of absolute paths of replica files');
    const vm: VmPlan = {
      name,
      disks: disks.map((replica: string, i) => ({ id: `disk${i}`, control: '', replica, store: '' })),
      source: spec,
      destination: spec,
      health: { timeoutMs: 0 },
    };
    const driver = createVmDriver(vm, side, logger, { env: options.env });
    const signal = c.req.raw.signal;
    if (action === 'status') return c.json(await driver.status(signal));
    if (action === 'health') await driver.health(healthCheck(body.health), signal);
    else await driver[action](signal);
    return c.json({ ok: true });
  });
}

function healthCheck(raw: unknown): HealthCheck {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw badInput('health', raw, '{ console?, command?, timeoutMs }');
  const o = raw as Record<string, unknown>;
  const timeoutMs = optionalInt(o, 'timeoutMs', 1, 86_400_000);
  if (timeoutMs === undefined) throw badInput('health.timeoutMs', undefined, 'a whole number of ms');
  if (o.console !== undefined && typeof o.console !== 'string') throw badInput('health.console', o.console, 'a regular expression');
  if (o.command !== undefined && !(Array.isArray(o.command) && o.command.length > 0 && o.command.every((a) => typeof a === 'string'))) {
    throw badInput('health.command', o.command, 'an argv, a non-empty list of strings');
  }
  return { timeoutMs, ...(o.console === undefined ? {} : { console: o.console }), ...(o.command === undefined ? {} : { command: o.command as string[] }) };
}
