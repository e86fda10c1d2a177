/**
 * Migrations: created as drafts, validated, throttled, cancelled, and their event logs.
 * Running them (copy, replication, cutover through the agents) comes with the agents.
 */
import { createRoute, z } from '@hono/zod-openapi';
import { FerryError } from '../../core/index.js';
import { IssuesError, finalMigrationStates, inventoryIssues, referenceIssues, renderIssues, type MigrationRecord } from '../../migrate/index.js';
import { errorResponses, eventView, jsonBody, jsonContent, migrationView, type WizardApp, type WizardDeps } from './common.js';
import { zodIssues } from './issues.js';
import { eventSchema, eventsQuery, idParams, migrationCreateSchema, migrationSchema, migrationSettingsSchema, throttlePatchSchema } from './schemas.js';

const tags = ['migrations'];

export function migrationRoutes(app: WizardApp, { records, logger }: WizardDeps): void {
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
    (c) => {
      const migration = unfinished(records.getMigration(c.req.valid('param').id), 'cancelled');
      if (migration.state === 'cutting over') {
        throw new FerryError('invalid-state', `migration ${migration.id} is cutting over: its cutover decides whether it rolls back`);
      }
      const cancelled = records.transition(migration.id, 'cancelled', `cancelled (it was ${migration.state}); nothing had run on the hosts, so nothing was cleaned up or kept`);
      logger.info('migration cancelled', { migration: migration.id, was: migration.state });
      return c.json(migrationView(cancelled), 200);
    },
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

function unfinished(migration: MigrationRecord, what: string): MigrationRecord {
  if (finalMigrationStates.includes(migration.state)) throw new FerryError('invalid-state', `migration ${migration.id} is ${migration.state}: it can no longer be ${what}`);
  return migration;
}
