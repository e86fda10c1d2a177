/**
 * What the wizard API's route modules share: the app's type, its dependencies, the error
 * responses routes declare, and the views that turn records into API objects (times as ISO
 * 8601; an agent's token never leaves the service).
 */
import type { OpenAPIHono } from '@hono/zod-openapi';
import type { Logger } from '../../core/index.js';
import type { AgentControl, HostRecord, MigrationRecord, MigrationEvent, ServiceRecords, Steering, StoreCheck, StoreRecord } from '../../migrate/index.js';
import type { S3Settings } from '../../store/index.js';
import { errorSchema } from './schemas.js';

export interface WizardEnv {
  Variables: {
    /** The name of the token the request came with (names are not secret). */
    tokenName: string;
  };
}

export type WizardApp = OpenAPIHono<WizardEnv>;

export interface WizardDeps {
  records: ServiceRecords;
  logger: Logger;
  /** S3 settings of the service (credentials from its environment); a store may override endpoint and region. */
  s3: S3Settings;
  storeCheckTimeoutMs: number;
  /** What moves migrations on (`ferry serve` runs one); without it, migrations stay where the API puts them. */
  steering?: Steering;
  /** A client of a host's agent (for its inventory); without it, hosts keep the inventory they were given. */
  connect?: (host: HostRecord) => AgentControl;
}

const errorDescriptions: Record<number, string> = {
  400: 'Bad input: every wrong field, with the value received',
  401: 'No bearer token, or not a known one',
  404: 'No such object',
  409: 'Not allowed in its current state, or in use',
};

/** The error responses of a route, for the OpenAPI document (401 on every authenticated route). */
export function errorResponses(...statuses: Array<400 | 404 | 409>) {
  const out: Record<number, { description: string; content: { 'application/json': { schema: typeof errorSchema } } }> = {};
  for (const status of [...statuses, 401]) out[status] = { description: errorDescriptions[status]!, content: { 'application/json': { schema: errorSchema } } };
  return out;
}

export function jsonContent<T>(schema: T, description: string) {
  return { description, content: { 'application/json': { schema } } };
}

export function jsonBody<T>(schema: T) {
  return { body: { content: { 'application/json': { schema } }, required: true } };
}

export function iso(ms: number): string {
  return new Date(ms).toISOString();
}

export function hostView(host: HostRecord) {
  return {
    id: host.id,
    name: host.name,
    role: host.role,
    agent: { url: host.agent.url, fingerprint: host.agent.fingerprint },
    ...(host.inventory ? { inventory: host.inventory } : {}),
    createdAt: iso(host.createdAtMs),
  };
}

function checkView(check: StoreCheck) {
  const { atMs, ...rest } = check;
  return { at: iso(atMs), ...rest };
}

export function storeView(store: StoreRecord) {
  return {
    id: store.id,
    name: store.name,
    url: store.url,
    ...(store.s3 ? { s3: store.s3 } : {}),
    createdAt: iso(store.createdAtMs),
    ...(store.lastCheck ? { lastCheck: checkView(store.lastCheck) } : {}),
  };
}

export function migrationView(migration: MigrationRecord) {
  return {
    id: migration.id,
    name: migration.name,
    state: migration.state,
    sourceHost: migration.sourceHost,
    destinationHost: migration.destinationHost,
    store: migration.store,
    ...migration.settings,
    createdAt: iso(migration.createdAtMs),
    updatedAt: iso(migration.updatedAtMs),
    ...(migration.error !== undefined ? { error: migration.error } : {}),
    ...(migration.cutoverId !== undefined ? { cutoverId: migration.cutoverId } : {}),
    cutoverRequested: migration.cutoverRequested,
    paused: migration.paused,
    ...(migration.seed ? { seed: migration.seed } : {}),
  };
}

export function eventView(event: MigrationEvent) {
  return { seq: event.seq, at: iso(event.atMs), message: event.message };
}
