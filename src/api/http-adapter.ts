/**
 * The small adapter between node:http(s) and a fetch-style handler (a hono app's `fetch`):
 * IncomingMessage to `Request`, `Response` back. Shared by every listener of a control API
 * (unix socket, TLS). Request bodies are small JSON here, so they are read whole (bounded);
 * a client that goes away aborts the request's signal. Failures are logged with the method
 * and URL only: never headers, which may carry credentials.
 */
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { FerryError, Logger, bindPrivately } from '../core/index.js';
import { errorResponse } from './http-errors.js';

export type FetchHandler = (request: Request) => Response | Promise<Response>;

const maxBodyBytes = 1024 * 1024;

/** A node:http request listener that answers each request with `handler`. */
export function nodeRequestListener(handler: FetchHandler, logger: Logger): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => void handle(handler, req, res, logger);
}

/**
 * Starts `server` listening on a unix socket path or a TCP address; a socket already in use
 * or not ours to take is 'invalid-state', anything else 'io'.
 */
export async function listen(server: Server, target: string | { host: string; port: number }, label: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    const listening = () => {
      server.off('error', reject);
      resolve();
    };
    if (typeof target === 'string') bindPrivately(() => server.listen(target, listening));
    else server.listen(target.port, target.host, listening);
  }).catch((err: NodeJS.ErrnoException) => {
    throw new FerryError(err.code === 'EADDRINUSE' || err.code === 'EACCES' ? 'invalid-state' : 'io', `cannot listen on ${label}: ${err.message}`, { cause: err });
  });
}

/** Stops accepting, closes idle keep-alive connections, and waits for the requests in flight. */
export function closeServer(server: Server): Promise<void> {
  return new Promise<void>((resolve) => {
    server.close(() => resolve());
    server.closeIdleConnections();
  });
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
