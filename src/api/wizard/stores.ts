/** Stores: where replicated data lands, with a connectivity check. */
import { createRoute, z } from '@hono/zod-openapi';
import { checkStore } from '../../migrate/index.js';
import { errorResponses, jsonBody, jsonContent, storeView, type WizardApp, type WizardDeps } from './common.js';
import { idParams, storeCreateSchema, storeSchema } from './schemas.js';

const tags = ['stores'];

export function storeRoutes(app: WizardApp, { records, logger, s3, storeCheckTimeoutMs }: WizardDeps): void {
  app.openapi(
    createRoute({
      method: 'post',
      path: '/v1/stores',
      tags,
      summary: 'Add a store (file:<dir> or s3://bucket[/prefix])',
      request: jsonBody(storeCreateSchema),
      responses: { 201: jsonContent(storeSchema, 'The store'), ...errorResponses(400, 409) },
    }),
    (c) => {
      const store = records.createStore(c.req.valid('json'));
      logger.info('store added', { store: store.id, name: store.name, url: store.url });
      return c.json(storeView(store), 201);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/stores',
      tags,
      summary: 'List the stores',
      responses: { 200: jsonContent(z.object({ stores: z.array(storeSchema) }), 'The stores, oldest first'), ...errorResponses() },
    }),
    (c) => c.json({ stores: records.listStores().map(storeView) }, 200),
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/stores/{id}',
      tags,
      summary: 'One store, with its last check',
      request: { params: idParams },
      responses: { 200: jsonContent(storeSchema, 'The store'), ...errorResponses(404) },
    }),
    (c) => c.json(storeView(records.getStore(c.req.valid('param').id)), 200),
  );

  app.openapi(
    createRoute({
      method: 'delete',
      path: '/v1/stores/{id}',
      tags,
      summary: 'Remove a store that no migration names (its data stays where it is)',
      request: { params: idParams },
      responses: { 204: { description: 'Removed' }, ...errorResponses(404, 409) },
    }),
    (c) => {
      const { id } = c.req.valid('param');
      records.deleteStore(id);
      logger.info('store removed', { store: id });
      return c.body(null, 204);
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/v1/stores/{id}/check',
      tags,
      summary: 'Check that the service reaches the store: opens its ferry repository, or makes one in an empty store',
      description: 'The outcome is kept as the store\'s lastCheck. An unreachable store is a result (reachable: false, with the error), not an error of this request.',
      request: { params: idParams },
      responses: { 200: jsonContent(storeSchema, 'The store with its lastCheck'), ...errorResponses(404) },
    }),
    async (c) => {
      const store = records.getStore(c.req.valid('param').id);
      const check = await checkStore(store.url, { ...s3, ...store.s3 }, storeCheckTimeoutMs);
      logger.info('store checked', { store: store.id, reachable: check.reachable, message: check.message });
      return c.json(storeView(records.recordStoreCheck(store.id, check)), 200);
    },
  );
}
