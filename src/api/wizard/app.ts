/**
 * The migration service's wizard API (`ferry serve`): hono with @hono/zod-openapi, every
 * route under /v1 behind a bearer token, plus `GET /healthz` for anyone. Requests are
 * validated by the zod schemas of schemas.ts, which also make the OpenAPI document at
 * `GET /v1/openapi.json`.
 *
 * Errors are `{ error: { code, message, issues? } }` (statuses from http-errors.ts); bad
 * input is a 400 whose `issues` name every wrong field and the value received, and whose
 * message lists them all.
 *
 * A token is checked by its SHA-256 against the `tokens` table. Tokens never reach a log
 * line: requests are logged by method, path, status and the token's name.
 */
import { OpenAPIHono, createRoute, z } from '@hono/zod-openapi';
import type { Context, MiddlewareHandler } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { HTTPException } from 'hono/http-exception';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import { Logger, asFerryError } from '../../core/index.js';
import { IssuesError, defaultStoreCheckTimeoutMs, renderIssues, type AgentControl, type HostRecord, type ServiceRecords, type Steering } from '../../migrate/index.js';
import type { S3Settings } from '../../store/index.js';
import { errorResponse } from '../http-errors.js';
import { errorResponses, jsonContent, type WizardApp, type WizardDeps, type WizardEnv } from './common.js';
import { hostRoutes } from './hosts.js';
import { zodIssues } from './issues.js';
import { liveRoutes } from './live.js';
import { migrationRoutes } from './migrations.js';
import { pageRoutes } from './page.js';
import { storeRoutes } from './stores.js';

export interface WizardAppOptions {
  records: ServiceRecords;
  logger?: Logger;
  /** S3 settings for the stores (credentials from the service's environment). */
  s3?: S3Settings;
  /** How long a store check waits for the store (default 15 s). */
  storeCheckTimeoutMs?: number;
  /** What moves the migrations on through the agents. */
  steering?: Steering;
  /** A client of a host's agent (for its inventory). */
  connect?: (host: HostRecord) => AgentControl;
}

export const openApiPath = '/v1/openapi.json';

const maxBodyBytes = 1024 * 1024;

/** Where each validation target is in a request, as error paths name it. */
const targetRoots: Record<string, string> = { json: 'body', param: 'path', query: 'query', header: 'header', cookie: 'cookie' };

export function wizardApp(options: WizardAppOptions): WizardApp {
  const logger = options.logger ?? Logger.silent();
  const deps: WizardDeps = { records: options.records, logger, s3: options.s3 ?? {}, storeCheckTimeoutMs: options.storeCheckTimeoutMs ?? defaultStoreCheckTimeoutMs, steering: options.steering, connect: options.connect };
  const app: WizardApp = new OpenAPIHono<WizardEnv>({
    defaultHook: (result) => {
      if (result.success) return;
      // On failure the validator passes the input it parsed as `data`: the issues show its values.
      const input = (result as { data?: unknown }).data;
      throw new IssuesError(renderIssues(targetRoots[result.target] ?? result.target, zodIssues(result.error, input)));
    },
  });

  app.onError((err, c) => {
    if (err instanceof HTTPException) return c.json({ error: httpExceptionError(err, c) }, err.status as ContentfulStatusCode);
    const { status, body } = errorResponse(err);
    if (status >= 500) logger.error('request failed', { method: c.req.method, path: c.req.path, error: asFerryError(err).stack ?? String(err) });
    const error = err instanceof IssuesError ? { ...body.error, issues: err.issues } : body.error;
    return c.json({ error }, status as ContentfulStatusCode);
  });
  app.notFound((c) => c.json({ error: { code: 'not-found', message: `no route ${c.req.method} ${c.req.path}` } }, 404));

  app.use('*', async (c, next) => {
    const started = performance.now();
    await next();
    const fields = { ms: Math.round(performance.now() - started), ...(c.get('tokenName') ? { token: c.get('tokenName') } : {}) };
    const line = `${c.req.method} ${c.req.path} ${c.res.status}`;
    if (c.req.path === '/healthz') logger.debug(line, fields);
    else logger.info(line, fields);
  });

  // Every /v1 route and /metrics: a known bearer token (then, for /v1, a bounded body). The
  // token is looked up by its SHA-256, which tells an attacker timing nothing about the tokens.
  const requireToken: MiddlewareHandler<WizardEnv> = async (c, next) => {
    const match = /^Bearer +(\S+) *$/i.exec(c.req.header('authorization') ?? '');
    const token = match ? deps.records.authenticate(match[1]!) : undefined;
    if (!token) {
      logger.warn('request refused', { reason: match ? 'a wrong bearer token' : 'no bearer token', method: c.req.method, path: c.req.path });
      c.header('WWW-Authenticate', 'Bearer realm="ferry"');
      const message = match ? "the bearer token is not one of this service's tokens" : "a bearer token is required: 'Authorization: Bearer TOKEN' (ferry serve token create NAME makes one)";
      return c.json({ error: { code: 'unauthorized', message } }, 401);
    }
    c.set('tokenName', token.name);
    await next();
  };
  app.use('/v1/*', requireToken);
  app.use('/metrics', requireToken);
  app.use(
    '/v1/*',
    bodyLimit({ maxSize: maxBodyBytes, onError: (c) => c.json({ error: { code: 'bad-input', message: `body: expected at most ${maxBodyBytes} bytes, received more` } }, 413) }),
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/healthz',
      tags: ['service'],
      summary: 'Whether the service answers (no token needed)',
      security: [],
      responses: { 200: jsonContent(z.object({ status: z.literal('ok') }), 'The service runs') },
    }),
    (c) => c.json({ status: 'ok' as const }, 200),
  );

  pageRoutes(app);
  hostRoutes(app, deps);
  storeRoutes(app, deps);
  migrationRoutes(app, deps);
  liveRoutes(app, deps);

  app.openAPIRegistry.registerComponent('securitySchemes', 'bearer', {
    type: 'http',
    scheme: 'bearer',
    description: "A token made by 'ferry serve token create NAME'",
  });
  let document: Record<string, unknown> | undefined;
  app.openapi(
    createRoute({
      method: 'get',
      path: openApiPath,
      tags: ['service'],
      summary: 'This document: the OpenAPI description of the wizard API, made from the schemas that validate its requests',
      responses: { 200: jsonContent(z.record(z.string(), z.unknown()), 'OpenAPI 3.0'), ...errorResponses() },
    }),
    (c) => {
      document ??= app.getOpenAPIDocument({
        openapi: '3.0.3',
        info: {
          title: 'ferry migration service: wizard API',
          version: '1',
          description: 'Hosts, stores and migrations of the ferry migration service. Every route but /healthz needs a bearer token.',
        },
        security: [{ bearer: [] }],
      }) as unknown as Record<string, unknown>;
      return c.json(document, 200);
    },
  );
  return app;
}

/** hono's own refusals (body not JSON, malformed JSON) in ferry's error shape. */
function httpExceptionError(err: HTTPException, c: Context): { code: string; message: string } {
  if (err.status === 415) {
    return { code: 'bad-input', message: `body: expected JSON (Content-Type: application/json), received Content-Type ${JSON.stringify(c.req.header('content-type') ?? 'none')}` };
  }
  if (err.status === 400 && /malformed json/i.test(err.message)) return { code: 'bad-input', message: 'body: expected a JSON document, received malformed JSON' };
  return { code: err.status < 500 ? 'bad-input' : 'internal', message: err.message };
}
