/**
 * Serves a fetch-style handler (a hono app's `fetch`) with node:http on a unix socket, for
 * local control: whoever may open the socket (mode 0600: this user) may control the filter.
 * The request/response adapter is http-adapter.ts.
 */
import { createServer, type Server } from 'node:http';
import { Logger } from '../core/index.js';
import { closeServer, listen, nodeRequestListener, type FetchHandler } from './http-adapter.js';

export type { FetchHandler } from './http-adapter.js';

export interface UnixHttpServer {
  readonly path: string;
  /** Stops accepting and waits for the requests in flight. */
  close(): Promise<void>;
}

/** Listens on `path` (mode 0600: only this user may control the filter). */
export async function serveOnUnixSocket(handler: FetchHandler, path: string, logger = Logger.silent()): Promise<UnixHttpServer> {
  const server: Server = createServer(nodeRequestListener(handler, logger));
  await listen(server, path, `unix:${path}`); // private from its creation (http-adapter.ts)
  return { path, close: () => closeServer(server) };
}
