/** Hosts: where VMs run, and how the service reaches each one's agent. */
import { createRoute, z } from '@hono/zod-openapi';
import { FerryError, asFerryError } from '../../core/index.js';
import type { HostRecord } from '../../migrate/index.js';
import { errorResponses, hostView, jsonBody, jsonContent, type WizardApp, type WizardDeps } from './common.js';
import { hostCreateSchema, hostSchema, idParams } from './schemas.js';

const tags = ['hosts'];

export function hostRoutes(app: WizardApp, { records, logger, connect }: WizardDeps): void {
  app.openapi(
    createRoute({
      method: 'post',
      path: '/v1/hosts',
      tags,
      summary: "Add a host: its role, its agent's address, pinned certificate and bearer token, and optionally its inventory",
      request: jsonBody(hostCreateSchema),
      responses: { 201: jsonContent(hostSchema, 'The host (without its agent token)'), ...errorResponses(400, 409) },
    }),
    async (c) => {
      const input = c.req.valid('json');
      let host = records.createHost(input);
      logger.info('host added', { host: host.id, name: host.name, role: host.role, agent: host.agent.url });
      // Without an inventory given, the agent's, if it answers now (else: refresh it later).
      if (!input.inventory && connect) host = await fetchInventory(host).catch(() => host);
      return c.json(hostView(host), 201);
    },
  );

  /** The agent's inventory, kept as the host's. */
  const fetchInventory = async (host: HostRecord): Promise<HostRecord> => {
    const inventory = await connect!(host).inventory({ timeoutMs: 10_000 });
    return records.setInventory(host.id, inventory);
  };

  app.openapi(
    createRoute({
      method: 'post',
      path: '/v1/hosts/{id}/inventory',
      tags,
      summary: "Read the host's inventory again from its agent: its VMs and their disks",
      request: { params: idParams },
      responses: { 200: jsonContent(hostSchema, 'The host, with the inventory its agent reports'), ...errorResponses(404, 409) },
    }),
    async (c) => {
      const host = records.getHost(c.req.valid('param').id);
      if (!connect) throw new FerryError('invalid-state', 'this service reaches no agents');
      try {
        return c.json(hostView(await fetchInventory(host)), 200);
      } catch (err) {
        throw new FerryError('invalid-state', `the agent of host ${host.name} (${host.agent.url}) did not give its inventory: ${asFerryError(err).message}`, { cause: err });
      }
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
