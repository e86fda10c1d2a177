/** Hosts: where VMs run, and how the service reaches each one's agent. */
import { createRoute, z } from '@hono/zod-openapi';
import { errorResponses, hostView, jsonBody, jsonContent, type WizardApp, type WizardDeps } from './common.js';
import { hostCreateSchema, hostSchema, idParams } from './schemas.js';

const tags = ['hosts'];

export function hostRoutes(app: WizardApp, { records, logger }: WizardDeps): void {
  app.openapi(
    createRoute({
      method: 'post',
      path: '/v1/hosts',
      tags,
      summary: "Add a host: its role, its agent's address, pinned certificate and bearer token, and optionally its inventory",
      request: jsonBody(hostCreateSchema),
      responses: { 201: jsonContent(hostSchema, 'The host (without its agent token)'), ...errorResponses(400, 409) },
    }),
    (c) => {
      const host = records.createHost(c.req.valid('json'));
      logger.info('host added', { host: host.id, name: host.name, role: host.role, agent: host.agent.url });
      return c.json(hostView(host), 201);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/hosts',
      tags,
      summary: 'List the hosts',
      responses: { 200: jsonContent(z.object({ hosts: z.array(hostSchema) }), 'The hosts, oldest first'), ...errorResponses() },
    }),
    (c) => c.json({ hosts: records.listHosts().map(hostView) }, 200),
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/hosts/{id}',
      tags,
      summary: 'One host',
      request: { params: idParams },
      responses: { 200: jsonContent(hostSchema, 'The host'), ...errorResponses(404) },
    }),
    (c) => c.json(hostView(records.getHost(c.req.valid('param').id)), 200),
  );

  app.openapi(
    createRoute({
      method: 'delete',
      path: '/v1/hosts/{id}',
      tags,
      summary: 'Remove a host that no migration names',
      request: { params: idParams },
      responses: { 204: { description: 'Removed' }, ...errorResponses(404, 409) },
    }),
    (c) => {
      const { id } = c.req.valid('param');
      records.deleteHost(id);
      logger.info('host removed', { host: id });
      return c.body(null, 204);
    },
  );
}
