/**
 * Migrations: created as drafts, validated, started (the service's steering then moves them
 * on through the agents), throttled, cut over (now, at a time, held for the go), cancelled;
 * their progress and event logs.
 */
import { createRoute, z } from '@hono/zod-openapi';
import { FerryError, asFerryError } from '../../core/index.js';
import { parseSideSpec } from '../../cutover/index.js';
import { IssuesError, finalMigrationStates, inventoryIssues, referenceIssues, renderIssues, type Issue, type MigrationRecord } from '../../migrate/index.js';
import { errorResponses, eventView, jsonBody, jsonContent, migrationView, type WizardApp, type WizardDeps } from './common.js';
import { zodIssues } from './issues.js';
import { progressView } from './live.js';
import { seedArrivedSchema, cutoverRequestSchema, eventSchema, eventsQuery, idParams, migrationCreateSchema, migrationSchema, migrationSettingsSchema, progressSchema, throttlePatchSchema } from './schemas.js';

const tags = ['migrations'];

export function migrationRoutes(app: WizardApp, { records, logger, steering }: WizardDeps): void {
  app.openapi(
    createRoute({
      method: 'post',
      path: '/v1/migrations',
      tags,
      summary: 'Create a migration, as a draft',
      description: 'Its hosts and store must exist in their roles; the rest is checked by validate.',
      request: jsonBody(migrationCreateSchema),
      responses: { 201: jsonContent(migrationSchema, 'The migration (state draft)'), ...errorResponses(400) },
    }),
    (c) => {
      const { name, sourceHost, destinationHost, store, ...settings } = c.req.valid('json');
      const problems = referenceIssues(records, { sourceHost, destinationHost, store });
      if (problems.length > 0) throw new IssuesError(renderIssues('body', problems));
      const migration = records.createMigration({ name, sourceHost, destinationHost, store, settings });
      logger.info('migration created', { migration: migration.id, name });
      return c.json(migrationView(migration), 201);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/migrations',
      tags,
      summary: 'List the migrations',
      responses: { 200: jsonContent(z.object({ migrations: z.array(migrationSchema) }), 'The migrations, newest first'), ...errorResponses() },
    }),
    (c) => c.json({ migrations: records.listMigrations().map(migrationView) }, 200),
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/migrations/{id}',
      tags,
      summary: 'One migration: its state and settings',
      request: { params: idParams },
      responses: { 200: jsonContent(migrationSchema, 'The migration'), ...errorResponses(404) },
    }),
    (c) => c.json(migrationView(records.getMigration(c.req.valid('param').id)), 200),
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/v1/migrations/{id}/validate',
      tags,
      summary: 'Check a draft and mark it validated',
      description:
        'Checks that its hosts and store exist in their roles, VM names are unique and each disk is listed once, its disks are in the source host\'s inventory (when the host has one), sizes, rates and durations parse, the cutover window has not passed and the runbook names its VMs. A 400 lists every problem; the migration stays a draft.',
      request: { params: idParams },
      responses: { 200: jsonContent(migrationSchema, 'The migration, validated'), ...errorResponses(400, 404, 409) },
    }),
    (c) => {
      const migration = records.getMigration(c.req.valid('param').id);
      if (migration.state !== 'draft' && migration.state !== 'validated') {
        throw new FerryError('invalid-state', `migration ${migration.id} is ${migration.state}: only a draft is validated`);
      }
      const parsed = migrationSettingsSchema.safeParse(migration.settings);
      const problems = [
        ...(parsed.success ? [] : zodIssues(parsed.error, migration.settings)),
        ...referenceIssues(records, migration),
        ...inventoryIssues(records, migration.sourceHost, migration.settings),
        ...vmSideIssues(migration, false),
      ];
      if (problems.length > 0) {
        const error = new IssuesError(renderIssues('migration', problems), `migration ${migration.id} is not valid`);
        records.addEvent(migration.id, `validation found ${problems.length} problem(s): ${error.issues.map((i) => `${i.path}: ${i.message}`).join('; ')}`);
        throw error;
      }
      const validated = records.transition(migration.id, 'validated', 'validated: hosts, store, VMs, disks, units, window and runbook');
      logger.info('migration validated', { migration: migration.id });
      return c.json(migrationView(validated), 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'patch',
      path: '/v1/migrations/{id}/throttle',
      tags,
      summary: "Change a migration's rate and/or weekly schedule of rates, live",
      request: { params: idParams, ...jsonBody(throttlePatchSchema) },
      responses: { 200: jsonContent(migrationSchema, 'The migration with its new throttle'), ...errorResponses(400, 404, 409) },
    }),
    (c) => {
      const migration = unfinished(records.getMigration(c.req.valid('param').id), 'throttled');
      const patch = c.req.valid('json');
      const before = migration.settings.throttle;
      const throttle = { rate: patch.rate ?? before.rate, schedule: patch.schedule ?? before.schedule };
      const changes = [
        ...(throttle.rate !== before.rate ? [`rate ${before.rate} -> ${throttle.rate}`] : []),
        ...(patch.schedule !== undefined ? [`schedule of ${throttle.schedule.length} window(s)`] : []),
      ];
      const updated = records.updateSettings(migration.id, { ...migration.settings, throttle }, `throttle: ${changes.join(', ') || 'unchanged'}`);
      logger.info('migration throttled', { migration: migration.id, rate: throttle.rate, windows: throttle.schedule.length });
      return c.json(migrationView(updated), 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/v1/migrations/{id}/cancel',
      tags,
      summary: 'Cancel a migration that has not begun its cutover',
      request: { params: idParams },
      responses: { 200: jsonContent(migrationSchema, 'The migration, cancelled'), ...errorResponses(404, 409) },
    }),
    async (c) => {
      const migration = unfinished(records.getMigration(c.req.valid('param').id), 'cancelled');
      if (migration.state === 'cutting over') {
        throw new FerryError('invalid-state', `migration ${migration.id} is cutting over: its cutover decides whether it rolls back`);
      }
      const done = migration.state === 'draft' || migration.state === 'validated' || !steering ? 'nothing had run on the hosts, so nothing was cleaned up or kept' : await steering.cleanUp(migration);
      const cancelled = records.transition(migration.id, 'cancelled', `cancelled (it was ${migration.state}); ${done}`);
      logger.info('migration cancelled', { migration: migration.id, was: migration.state });
      return c.json(migrationView(cancelled), 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/v1/migrations/{id}/start',
      tags,
      summary: 'Start a validated migration: base copies, then replicas that follow the changes',
      request: { params: idParams },
      responses: { 200: jsonContent(migrationSchema, 'The migration, copying'), ...errorResponses(404, 409) },
    }),
    (c) => {
      const migration = records.getMigration(c.req.valid('param').id);
      if (migration.state !== 'validated') throw new FerryError('invalid-state', `migration ${migration.id} is ${migration.state}: only a validated migration is started (POST .../validate first)`);
      const started = records.startMigration(migration.id);
      steering?.poke();
      logger.info('migration started', { migration: migration.id });
      return c.json(migrationView(started), 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/v1/migrations/{id}/cutover',
      tags,
      summary: 'Ask for the cutover: now, or not before `at`; held for the go if asked',
      description: 'The cutover begins once the migration is ready (every replica consistent). Every VM needs its source and destination (as in a cutover plan); a 400 names each one missing or wrong.',
      request: { params: idParams, ...jsonBody(cutoverRequestSchema) },
      responses: { 200: jsonContent(migrationSchema, 'The migration, its cutover requested'), ...errorResponses(400, 404, 409) },
    }),
    (c) => {
      const migration = unfinished(records.getMigration(c.req.valid('param').id), 'cut over');
      if (migration.state === 'draft') throw new FerryError('invalid-state', `migration ${migration.id} is a draft: validate it first`);
      if (migration.state === 'cutting over') throw new FerryError('invalid-state', `migration ${migration.id} is cutting over already (cutover ${migration.cutoverId})`);
      const problems = vmSideIssues(migration, true);
      if (problems.length > 0) throw new IssuesError(renderIssues('migration', problems), `migration ${migration.id} cannot be cut over`);
      const updated = records.requestCutover(migration.id, c.req.valid('json'));
      steering?.poke();
      logger.info('cutover requested', { migration: migration.id });
      return c.json(migrationView(updated), 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/v1/migrations/{id}/seed/arrived',
      tags,
      summary: 'Transport seed: the device arrived at the destination host, here; its import begins',
      request: { params: idParams, ...jsonBody(seedArrivedSchema) },
      responses: { 200: jsonContent(migrationSchema, 'The migration'), ...errorResponses(400, 404, 409) },
    }),
    (c) => {
      const migration = records.getMigration(c.req.valid('param').id);
      if (migration.settings.transport.mode !== 'seed') throw new FerryError('invalid-state', `migration ${migration.id} goes over the network: it has no seed`);
      if (migration.state !== 'copying' || !migration.seed?.seedId) throw new FerryError('invalid-state', `migration ${migration.id} is ${migration.state}${migration.seed?.seedId ? '' : ', its seed not exported yet'}: no seed is on its way`);
      const { device } = c.req.valid('json');
      const updated = records.updateSeed(migration.id, { arrivedDevice: device, imported: false }, `the seed arrived at the destination host: ${device}`);
      steering?.poke();
      return c.json(migrationView(updated), 200);
    },
  );

  for (const [action, summary] of [
    ['pause', 'Pause a started migration: its source disks are parked (changes tracked, nothing ships), nothing of it moves on'],
    ['resume', 'Let a paused migration go on: its disks stream again (a resync ships what changed)'],
  ] as const) {
    app.openapi(
      createRoute({
        method: 'post',
        path: `/v1/migrations/{id}/${action}`,
        tags,
        summary,
        request: { params: idParams },
        responses: { 200: jsonContent(migrationSchema, 'The migration'), ...errorResponses(404, 409) },
      }),
      (c) => {
        const migration = records.getMigration(c.req.valid('param').id);
        if (!['copying', 'replicating', 'ready'].includes(migration.state)) {
          throw new FerryError('invalid-state', `migration ${migration.id} is ${migration.state}: only a started migration that is not cutting over can be ${action}d`);
        }
        const pause = action === 'pause';
        const updated = migration.paused === pause ? migration : records.setPaused(migration.id, pause, pause ? 'paused by the operator' : 'resumed by the operator');
        steering?.poke();
        return c.json(migrationView(updated), 200);
      },
    );
  }

  for (const [action, summary] of [
    ['go', 'The go for a cutover held for it'],
    ['cancel', 'Cancel a cutover: it rolls back if it has not committed'],
  ] as const) {
    app.openapi(
      createRoute({
        method: 'post',
        path: `/v1/migrations/{id}/cutover/${action}`,
        tags,
        summary,
        request: { params: idParams },
        responses: { 200: jsonContent(migrationSchema, 'The migration'), ...errorResponses(404, 409) },
      }),
      (c) => {
        const migration = records.getMigration(c.req.valid('param').id);
        if (migration.state !== 'cutting over' || !migration.cutoverId || !steering) throw new FerryError('invalid-state', `migration ${migration.id} is ${migration.state}: no cutover is under way`);
        if (action === 'go') steering.cutoverRecords.requestGo(migration.cutoverId);
        else steering.cutoverRecords.requestCancel(migration.cutoverId);
        records.addEvent(migration.id, action === 'go' ? 'the operator gave the go' : 'the operator cancelled the cutover');
        return c.json(migrationView(records.getMigration(migration.id)), 200);
      },
    );
  }

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/migrations/{id}/progress',
      tags,
      summary: 'Where each disk is (base copy, lag, replica), bytes to go and ETA, the cutover report',
      request: { params: idParams },
      responses: { 200: jsonContent(progressSchema, 'As the service last saw it'), ...errorResponses(404) },
    }),
    (c) => c.json(progressView(records, steering, c.req.valid('param').id), 200),
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/migrations/{id}/events',
      tags,
      summary: "A migration's event log, oldest first",
      request: { params: idParams, query: eventsQuery },
      responses: { 200: jsonContent(z.object({ events: z.array(eventSchema) }), 'The events (after `after`, if given)'), ...errorResponses(400, 404) },
    }),
    (c) => {
      const { id } = c.req.valid('param');
      const { after } = c.req.valid('query');
      return c.json({ events: records.events(id, after).map(eventView) }, 200);
    },
  );
}

/** The VMs' sides and health checks, checked as a cutover plan's are; `required`: each VM must have both sides. */
function vmSideIssues(migration: MigrationRecord, required: boolean): Issue[] {
  const issues: Issue[] = [];
  migration.settings.vms.forEach((vm, i) => {
    for (const side of ['source', 'destination'] as const) {
      const spec = vm[side];
      if (spec === undefined) {
        if (required) issues.push({ path: ['vms', i, side], message: `expected how the ${side} host runs VM ${JSON.stringify(vm.name)} (as a cutover plan's vms[].${side}), received nothing` });
        continue;
      }
      try {
        parseSideSpec(spec, side);
      } catch (err) {
        // Its message names the fields within the side: `source.qmp: expected ...`.
        issues.push({ path: ['vms', i], message: asFerryError(err).message });
      }
    }
  });
  return issues;
}

function unfinished(migration: MigrationRecord, what: string): MigrationRecord {
  if (finalMigrationStates.includes(migration.state)) throw new FerryError('invalid-state', `migration ${migration.id} is ${migration.state}: it can no longer be ${what}`);
  return migration;
}
