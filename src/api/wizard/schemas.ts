/**
 * The wizard API's request and response schemas (zod). The same schemas validate requests
 * and generate the OpenAPI document (`GET /v1/openapi.json`). Sizes, rates and durations
 * are checked by core's parsers (parseSize, parseRate, parseDuration) inside refinements and
 * kept as written; a migration's rules beyond its shape are migrate's `settingsIssues`.
 */
import { z } from '@hono/zod-openapi';
import { badInput, isFerryError, parseDuration, parseRate, parseSize } from '../../core/index.js';
import { hostRoles, migrationStates, nameExpected, namePattern, rateWindowIssues, settingsIssues, weekdays, type Issue, type MigrationSettings } from '../../migrate/index.js';
import { checkDiskId, openStore } from '../../store/index.js';
import { normalizeFingerprint } from '../tls-cert.js';

/**
 * A string that `parse` accepts; its complaint (a FerryError 'bad-input', `field: expected
 * ..., received ...`) becomes the issue, without its field name: the issue's path names it.
 */
function parsedBy(parse: (text: string) => unknown) {
  return z.string().superRefine((text, ctx) => {
    try {
      parse(text);
    } catch (err) {
      if (!isFerryError(err, 'bad-input')) throw err;
      ctx.addIssue({ code: 'custom', message: err.message.replace(/^[^:]*: /, '') });
    }
  });
}

export const sizeText = parsedBy((text) => parseSize(text)).meta({ description: 'A size: bytes with an optional binary suffix (K = 1024): 512, 64K, 4M, 1G.', example: '256M' });

export const rateText = parsedBy((text) => parseRate(text)).meta({
  description: 'A rate per second, with decimal suffixes: 50M/s (50*10^6 bytes/s), 400Mbit/s, or unlimited.',
  example: '50M/s',
});

export const durationText = parsedBy((text) => {
  if (parseDuration(text) <= 0) throw badInput('duration', text, 'a duration above zero, such as 500ms, 30s, 5m or 1h');
}).meta({ description: 'A duration: 500ms, 30s, 5m, 1h.', example: '30m' });

export const nameText = z.string().regex(namePattern, { error: nameExpected }).meta({ example: 'site-a' });

const absolutePath = z.string().regex(/^\/./, { error: 'an absolute path' });

/** A disk's id at its agent and in the store (store's checkDiskId). */
const diskIdText = parsedBy(checkDiskId).meta({ example: 'db-root' });

/** The id of a host, store or migration, as the API gave it. */
const idText = z.string().min(1).meta({ example: 'host-3fa9c2d1e0' });

export const idParams = z.object({ id: idText });

const isoTime = z.iso.datetime({ offset: true }).meta({ example: '2026-12-06T22:00:00Z' });
const timestamp = z.string().meta({ description: 'ISO 8601, UTC', example: '2026-12-01T09:30:00.000Z' });

// Hosts

const agentUrlPattern = /^https:\/\/(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})\/?$/;

const agentUrl = z
  .string()
  .superRefine((text, ctx) => {
    const match = agentUrlPattern.exec(text);
    const port = Number(match?.[2]);
    if (!match || port < 1 || port > 65535) ctx.addIssue({ code: 'custom', message: `expected the agent's address, https://HOST:PORT, received ${JSON.stringify(text)}` });
  })
  .transform((text) => text.replace(/\/$/, ''))
  .meta({ example: 'https://10.0.0.5:7443' });

const fingerprint = parsedBy(normalizeFingerprint)
  .transform((text) => normalizeFingerprint(text))
  .meta({ description: "SHA-256 of the agent's TLS certificate, as `ferry agent` prints it: sha256:<64 hex>; AB:CD:... is accepted too", example: `sha256:${'0'.repeat(64)}` });

const inventorySchema = z
  .strictObject({
    vms: z.array(
      z.strictObject({
        name: nameText,
        disks: z.array(z.strictObject({ id: diskIdText, sizeBytes: z.number().int().min(0).optional() })),
      }),
    ),
  })
  .meta({ id: 'Inventory', description: "The VMs and disks at a host (what its agent reports). A migration's disks must be in its source host's inventory, when it has one." });

export const hostCreateSchema = z
  .strictObject({
    name: nameText,
    role: z.enum(hostRoles),
    agent: z.strictObject({
      url: agentUrl,
      fingerprint,
      token: z.string().min(16).max(4096).regex(/^\S+$/, { error: 'a token without white space' }).meta({ description: "The bearer token the agent expects; never shown again" }),
    }),
    inventory: inventorySchema.optional(),
  })
  .meta({ id: 'HostCreate' });

export const hostSchema = z
  .object({
    id: idText,
    name: z.string(),
    role: z.enum(hostRoles),
    agent: z.object({ url: z.string(), fingerprint: z.string() }),
    inventory: inventorySchema.optional(),
    createdAt: timestamp,
  })
  .meta({ id: 'Host' });

// Stores

const storeUrl = z
  .string()
  .superRefine((text, ctx) => {
    if (text.startsWith('file:') && !text.startsWith('file:/')) {
      ctx.addIssue({ code: 'custom', message: `expected file:<absolute directory> (the service resolves no relative paths), received ${JSON.stringify(text)}` });
      return;
    }
    try {
      openStore(text);
    } catch (err) {
      if (!isFerryError(err, 'bad-input')) throw err;
      ctx.addIssue({ code: 'custom', message: err.message.replace(/^[^:]*: /, '') });
    }
  })
  .meta({ example: 's3://ferry-site-b/prod' });

const s3Schema = z.strictObject({
  endpoint: z.url({ protocol: /^https?$/, error: 'an http(s) URL such as http://10.0.0.9:9000' }).optional(),
  region: z.string().min(1).optional(),
});

export const storeCreateSchema = z
  .strictObject({ name: nameText, url: storeUrl, s3: s3Schema.optional().meta({ description: "For s3: URLs, the endpoint and region, if not the service's defaults; credentials are the service's" }) })
  .meta({ id: 'StoreCreate' });

const storeCheckSchema = z
  .object({
    at: timestamp,
    reachable: z.boolean(),
    message: z.string(),
    code: z.string().optional(),
    repositoryId: z.string().optional(),
    chunkSizeBytes: z.number().int().optional(),
    initialized: z.boolean().optional(),
  })
  .meta({ id: 'StoreCheck' });

export const storeSchema = z
  .object({ id: idText, name: z.string(), url: z.string(), s3: s3Schema.optional(), createdAt: timestamp, lastCheck: storeCheckSchema.optional() })
  .meta({ id: 'Store' });

// Migrations

/** A refinement that adds the issues of one of migrate's rules (rules.ts) to the document's. */
function withRules<T>(rules: (value: T) => Issue[]) {
  return (value: T, ctx: z.RefinementCtx<T>): void => {
    for (const issue of rules(value)) ctx.addIssue({ code: 'custom', path: [...issue.path], message: issue.message });
  };
}

const withSettingsRules = withRules<MigrationSettings>((settings) => settingsIssues(settings));

const hhmm = /^([01]\d|2[0-3]):[0-5]\d$/;
const rateWindowSchema = z
  .strictObject({
    days: z.array(z.enum(weekdays)).min(1),
    from: z.string().regex(hhmm, { error: 'a time of day, HH:MM (UTC)' }),
    to: z.string().regex(/^(([01]\d|2[0-3]):[0-5]\d|24:00)$/, { error: 'a time of day, HH:MM (UTC), up to 24:00' }),
    rate: rateText,
  })
  .superRefine(withRules(rateWindowIssues));

const throttleSchema = z
  .strictObject({
    rate: rateText.default('unlimited'),
    schedule: z.array(rateWindowSchema).default([]).meta({ description: 'A weekly schedule: within a window (UTC) its rate applies, elsewhere `rate`; the first window that covers a moment wins' }),
  })
  .meta({ id: 'Throttle' });

/** A VM's side or health checks, as in a cutover plan: checked as a plan is, when the migration is validated. */
const sideSpec = z.record(z.string(), z.unknown());

const settingsShape = {
  vms: z
    .array(
      z.strictObject({
        name: nameText,
        disks: z.array(z.strictObject({ id: diskIdText, replica: absolutePath.optional().meta({ description: "The replica's path at the destination host; default: the destination agent's choice" }) })).min(1),
        source: sideSpec.optional().meta({ description: "How the source host runs the VM, as a cutover plan's vms[].source (docs/FORMAT.md); needed for the cutover" }),
        destination: sideSpec.optional().meta({ description: "How the destination host runs it, as a cutover plan's vms[].destination; needed for the cutover" }),
        health: sideSpec.optional().meta({ description: "When the destination VM is healthy, as a cutover plan's vms[].health" }),
      }),
    )
    .min(1),
  transport: z
    .discriminatedUnion('mode', [
      z.strictObject({ mode: z.literal('network') }),
      z.strictObject({ mode: z.literal('seed'), device: absolutePath.optional(), volumeSize: sizeText.optional() }),
    ])
    .default({ mode: 'network' })
    .meta({ description: 'network: the base copy goes over the link; seed: exported to a device at the source, shipped, imported at the destination, then the changes since follow over the link' }),
  throttle: throttleSchema.default({ rate: 'unlimited', schedule: [] }),
  backpressure: z
    .strictObject({ highWater: sizeText.optional(), maxDelay: durationText.optional() })
    .optional()
    .meta({ description: "Above highWater of unshipped journal bytes, a source disk's writes are delayed, up to maxDelay" }),
  cutover: z
    .strictObject({
      at: isoTime.optional().meta({ description: 'Not before this time; default: as soon as the migration is ready' }),
      window: durationText.default('30m'),
      budget: durationText.default('2s').meta({ description: 'Downtime budget: the predicted pause must fit' }),
      hold: z.boolean().default(false).meta({ description: 'Wait for the go once ready' }),
      verify: z.enum(['deltas', 'full']).optional().meta({ description: 'deltas: every delta verified as applied (default); full: SHA-256 of each whole source and replica while paused' }),
      maxLagSeconds: z.number().int().min(0).max(86_400).optional().meta({ description: 'Replicas may lag their sources by at most this much when the pause starts (default 10)' }),
    })
    .default({ window: '30m', budget: '2s', hold: false }),
  runbook: z
    .strictObject({
      boot: z.array(z.strictObject({ vms: z.array(z.string()).min(1), delay: durationText.optional() })).min(1),
      onFailure: z.enum(['stop', 'continue']).default('stop'),
    })
    .optional()
    .meta({ description: 'Boot steps in order at the destination; default: one step with every VM' }),
};


/** A migration's settings: what a draft stores, checked again when it is validated. */
export const migrationSettingsSchema = z.strictObject(settingsShape).superRefine(withSettingsRules);

export const migrationCreateSchema = z
  .strictObject({ name: nameText, sourceHost: idText, destinationHost: idText, store: idText, ...settingsShape })
  .superRefine(withSettingsRules)
  .meta({ id: 'MigrationCreate' });

export const throttlePatchSchema = z
  .strictObject({ rate: rateText.optional(), schedule: z.array(rateWindowSchema).optional() })
  .refine((patch) => patch.rate !== undefined || patch.schedule !== undefined, { message: 'expected "rate", "schedule" or both, received neither' })
  .meta({ id: 'ThrottlePatch' });

export const migrationSchema = z
  .object({
    id: idText,
    name: z.string(),
    state: z.enum(migrationStates),
    sourceHost: idText,
    destinationHost: idText,
    store: idText,
    ...settingsShape,
    createdAt: timestamp,
    updatedAt: timestamp,
    error: z.string().optional(),
    cutoverId: z.string().optional().meta({ description: 'Its cutover, once begun' }),
    cutoverRequested: z.boolean(),
    paused: z.boolean().meta({ description: 'Paused by the operator: its source disks are parked, nothing of it moves on' }),
    seed: z.object({ seedId: z.string(), arrivedDevice: z.string(), imported: z.boolean() }).partial().optional().meta({ description: 'Transport seed: the seed exported, where it arrived, whether it is imported' }),
  })
  .meta({ id: 'Migration' });

export const seedArrivedSchema = z
  .strictObject({ device: absolutePath.meta({ description: 'The seed device (its directory) as the destination host sees it' }) })
  .meta({ id: 'SeedArrived' });

export const cutoverRequestSchema = z
  .strictObject({
    at: isoTime.optional().meta({ description: 'Not before this time; default: now' }),
    hold: z.boolean().optional().meta({ description: 'Wait for the go once the pre-checks pass' }),
    verify: z.enum(['deltas', 'full']).optional(),
  })
  .meta({ id: 'CutoverRequest' });

const diskProgressSchema = z
  .object({
    vm: z.string(),
    disk: z.string(),
    manifestId: z.string().optional(),
    replicaId: z.string(),
    replicaPath: z.string().optional(),
    baseCopy: z.object({ state: z.string(), bytesDone: z.number(), bytesTotal: z.number(), rateBytesPerSec: z.number() }).partial().optional(),
    source: z
      .object({ mode: z.string(), parked: z.boolean(), consistent: z.boolean(), lagSeconds: z.number(), backlogBytes: z.number(), drainRateBytesPerSec: z.number(), predictedPauseMs: z.number().nullable() })
      .optional(),
    replica: z.object({ state: z.string(), nextSeq: z.number(), consistent: z.boolean(), bytesApplied: z.number(), error: z.string() }).partial().optional(),
  })
  .meta({ id: 'DiskProgress' });

export const progressSchema = z
  .object({
    id: z.string(),
    state: z.enum(migrationStates),
    paused: z.boolean(),
    disks: z.array(diskProgressSchema),
    bytesToGo: z.number().meta({ description: 'Base copy bytes still to go' }),
    etaSeconds: z.number().optional(),
    cutover: z.record(z.string(), z.unknown()).optional().meta({ description: 'The cutover report (states, downtime, disks verified)' }),
    seed: z
      .object({ phase: z.enum(['export', 'shipping', 'import']), state: z.string(), bytesDone: z.number(), bytesTotal: z.number(), rateBytesPerSec: z.number() })
      .partial()
      .optional()
      .meta({ description: 'Transport seed: exported at the source, shipping, imported at the destination' }),
    at: timestamp,
  })
  .meta({ id: 'MigrationProgress' });

export const eventSchema = z.object({ seq: z.number().int(), at: timestamp, message: z.string() }).meta({ id: 'MigrationEvent' });

export const eventsQuery = z.object({ after: z.coerce.number().int().min(0).optional().meta({ description: 'Only events after this seq' }) });

// Errors

export const errorSchema = z
  .object({
    error: z.object({
      code: z.string().meta({ example: 'bad-input' }),
      message: z.string(),
      issues: z.array(z.object({ path: z.string(), message: z.string() })).optional().meta({ description: 'Bad input: each wrong field and what was wrong with it' }),
    }),
  })
  .meta({ id: 'Error' });
