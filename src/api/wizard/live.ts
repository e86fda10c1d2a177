/**
 * Live views of the migrations: a migration's progress as server-sent events (what the web
 * wizard draws), and Prometheus metrics of every migration the service steers.
 *
 *   GET /v1/migrations/{id}/stream   text/event-stream: `progress` (the progress document,
 *                                    every second) and `event` (each new event-log entry);
 *                                    ends after the migration ends
 *   GET /metrics                     Prometheus text format 0.0.4 (bearer token, as /v1)
 */
import { createRoute, z } from '@hono/zod-openapi';
import { streamSSE } from 'hono/streaming';
import { finalMigrationStates, migrationStates, type MigrationProgress, type ServiceRecords, type Steering } from '../../migrate/index.js';
import { report } from '../../cutover/index.js';
import { errorResponses, eventView, type WizardApp, type WizardDeps } from './common.js';
import { idParams } from './schemas.js';

const streamIntervalMs = 1000;

/** A migration's progress document (GET .../progress and the stream's `progress` events). */
export function progressView(records: ServiceRecords, steering: Steering | undefined, id: string) {
  const migration = records.getMigration(id);
  const seen = steering?.progressOf(id);
  const cutover = migration.cutoverId && steering ? report(steering.cutoverRecords, migration.cutoverId) : undefined;
  return {
    id: migration.id,
    state: migration.state,
    paused: migration.paused,
    disks: seen?.disks ?? records.migrationDisks(migration.id),
    bytesToGo: seen?.bytesToGo ?? 0,
    ...(seen?.etaSeconds !== undefined ? { etaSeconds: seen.etaSeconds } : {}),
    ...(cutover ? { cutover: cutover as unknown as Record<string, unknown> } : {}),
    ...(seen?.seed ? { seed: seen.seed } : {}),
    at: new Date(seen?.atMs ?? Date.now()).toISOString(),
  };
}

export function liveRoutes(app: WizardApp, { records, steering }: WizardDeps): void {
  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/migrations/{id}/stream',
      tags: ['migrations'],
      summary: "A migration's progress and events as server-sent events",
      description: 'Events: `progress` (the progress document, every second) and `event` (each new entry of the event log, oldest first). The stream ends a little after the migration does.',
      request: { params: idParams },
      responses: { 200: { description: 'text/event-stream', content: { 'text/event-stream': { schema: z.string() } } }, ...errorResponses(404) },
    }),
    (c) => {
      const { id } = c.req.valid('param');
      records.getMigration(id); // 404 before the stream starts
      return streamSSE(c, async (stream) => {
        let after = 0;
        let aborted = false;
        stream.onAbort(() => {
          aborted = true;
        });
        while (!aborted) {
          for (const e of records.events(id, after)) {
            await stream.writeSSE({ event: 'event', id: String(e.seq), data: JSON.stringify(eventView(e)) });
            after = e.seq;
          }
          const progress = progressView(records, steering, id);
          await stream.writeSSE({ event: 'progress', data: JSON.stringify(progress) });
          if (finalMigrationStates.includes(progress.state)) break;
          await stream.sleep(streamIntervalMs);
        }
      }) as never;
    },
  );

  // Prometheus scrapes with a bearer token as well (its authorization: { credentials }).
  app.openapi(
    createRoute({
      method: 'get',
      path: '/metrics',
      tags: ['service'],
      summary: 'Prometheus metrics: each migration\'s state, bytes to go and ETA; each disk\'s lag (seconds, bytes), rates, mode, predicted pause; each replica\'s progress',
      responses: { 200: { description: 'Prometheus text format 0.0.4', content: { 'text/plain': { schema: z.string() } } }, ...errorResponses() },
    }),
    (c) => c.text(metrics(records, steering), 200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' }) as never,
  );
}

/** Every migration's state, and each steered one's figures, in Prometheus text format. */
export function metrics(records: ServiceRecords, steering: Steering | undefined): string {
  const families = new Map<string, { help: string; type: 'gauge' | 'counter'; samples: string[] }>();
  const sample = (name: string, help: string, labels: Record<string, string>, value: number | null | undefined) => {
    if (value === null || value === undefined || !Number.isFinite(value)) return;
    let family = families.get(name);
    if (!family) families.set(name, (family = { help, type: 'gauge', samples: [] }));
    const text = Object.entries(labels)
      .map(([k, v]) => `${k}="${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`)
      .join(',');
    family.samples.push(`${name}{${text}} ${value}`);
  };
  for (const m of records.listMigrations()) {
    for (const state of migrationStates) sample('ferry_migration_state', 'The state a migration is in (1 for its state, 0 for the others)', { migration: m.id, name: m.name, state }, m.state === state ? 1 : 0);
    const p: MigrationProgress | undefined = steering?.progressOf(m.id);
    if (!p || finalMigrationStates.includes(m.state)) continue;
    sample('ferry_migration_bytes_to_go', 'Base copy bytes still to go', { migration: m.id }, p.bytesToGo);
    sample('ferry_migration_eta_seconds', 'Time to the end of the base copies at their current rate', { migration: m.id }, p.etaSeconds);
    for (const d of p.disks) {
      const labels = { migration: m.id, vm: d.vm, disk: d.disk };
      if (d.source) {
        sample('ferry_disk_lag_seconds', 'Age of the oldest change of the source disk not yet in the store', labels, d.source.lagSeconds);
        sample('ferry_disk_lag_bytes', 'Bytes of changes waiting at the source: unshipped journal and dirty blocks', labels, d.source.backlogBytes);
        sample('ferry_disk_drain_rate_bytes_per_second', 'Rate at which the source ships its changes', labels, d.source.drainRateBytesPerSec);
        sample('ferry_disk_predicted_pause_seconds', 'Predicted cutover pause of the disk', labels, d.source.predictedPauseMs === null ? null : d.source.predictedPauseMs / 1000);
        sample('ferry_disk_streaming', 'Whether the disk ships every write as it comes (1) or only dirty blocks (0, bitmap mode)', labels, d.source.mode === 'streaming' ? 1 : 0);
      }
      if (d.baseCopy) {
        sample('ferry_disk_base_copy_bytes_done', 'Bytes of the base copy done', labels, d.baseCopy.bytesDone);
        sample('ferry_disk_base_copy_bytes_total', 'Bytes of the base copy in all', labels, d.baseCopy.bytesTotal);
        sample('ferry_disk_base_copy_rate_bytes_per_second', 'Rate of the base copy', labels, d.baseCopy.rateBytesPerSec);
      }
      if (d.replica) {
        sample('ferry_replica_bytes_applied', 'Bytes of changes applied to the replica', labels, d.replica.bytesApplied);
        sample('ferry_replica_consistent', 'Whether the replica is a consistent image of its disk at some moment', labels, d.replica.consistent ? 1 : 0);
      }
    }
  }
  const lines: string[] = [];
  for (const [name, family] of families) lines.push(`# HELP ${name} ${family.help}`, `# TYPE ${name} ${family.type}`, ...family.samples);
  return `${lines.join('\n')}\n`;
}
