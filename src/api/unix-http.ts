/**
 * Serves a fetch-style handler (a hono app's `fetch`) with node:http on a unix socket: the
 * small adapter from IncomingMessage to `Request` and from `Response` back. Request bodies
 * are small JSON here, so they are read whole (bounded); a client that goes away aborts the
 * request's signal.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { chmod } from 'node:fs/promises';
import { FerryError, Logger } from '../core/index.js';
import { errorResponse } from './http-errors.js';

export type FetchHandler = (request: Request) => Response | Promise<Response>;

const maxBodyBytes = 1024 * 1024;

export interface UnixHttpServer {
  readonly path: string;
  /** Stops accepting and waits for the requests in flight. */
  close(): Promise<void>;
}

/** Listens on `path` (mode 0600: only this user may control the filter). */
export async function serveOnUnixSocket(handler: FetchHandler, path: string, logger = Logger.silent()): Promise<UnixHttpServer> {
  const server: Server = createServer((req, res) => void handle(handler, req, res, logger));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => {
      server.off('error', reject);
      resolve();
    });
  }).catch((err: NodeJS.ErrnoException) => {
    throw new FerryError(err.code === 'EADDRINUSE' || err.code === 'EACCES' ? 'invalid-state' : 'io', `cannot listen on unix:${path}: ${err.message}`, { cause: err });
  });
  await chmod(path, 0o600);
  return {
    path,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
      }),
  };
}

async function handle(handler: FetchHandler, req: IncomingMessage, res: ServerResponse, logger: Logger): Promise<void> {
  const gone = new AbortController();
  res.on('close', () => {
    if (!res.writableFinished) gone.abort(new Error('client went away'));
  });
  try {
    const body = await readBody(req);
    const headers = new Headers();
    for (const [name, value] of Object.entries(req.headers)) {
      if (Array.isArray(value)) for (const v of value) headers.append(name, v);
      else if (value !== undefined) headers.set(name, value);
    }
    const method = req.method ?? 'GET';
    const request = new Request(`http://localhost${req.url ?? '/'}`, {
      method,
      headers,
      body: method === 'GET' || method === 'HEAD' || body.byteLength === 0 ? undefined : body,
      signal: gone.signal,
    });
    const response = await handler(request);
    const payload = Buffer.from(await response.arrayBuffer());
    res.writeHead(response.status, Object.fromEntries(response.headers.entries()));
    res.end(payload);
  } catch (err) {
    const { status, body } = errorResponse(err);
    if (status >= 500) logger.error('control request failed', { method: req.method, url: req.url, error: body.error.message });
    if (!res.headersSent) res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  }
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const parts: Buffer[] = [];
  let length = 0;
  for await (const part of req as AsyncIterable<Buffer>) {
    length += part.byteLength;
    if (length > maxBodyBytes) throw new FerryError('bad-input', `request body: expected at most ${maxBodyBytes} bytes, received more`);
    parts.push(part);
  }
  return Buffer.concat(parts);
}
