/**
 * Serves a fetch-style handler (a hono app's `fetch`) over HTTPS on a TCP address, for a
 * control API reached from other hosts. Every request but `GET /healthz` must carry
 * `Authorization: Bearer <token>`; only the token's SHA-256 is kept, and a presented token is
 * hashed and compared with it in constant time. A missing or wrong token is answered 401
 * `{ error: { code: "unauthorized", message } }` before the handler sees the request.
 * Neither tokens nor Authorization headers are ever logged. The request/response adapter
 * is http-adapter.ts.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer } from 'node:https';
import { isIPv6, type Socket } from 'node:net';
import { FerryError, Logger } from '../core/index.js';
import { closeServer, listen, nodeRequestListener, type FetchHandler } from './http-adapter.js';
import { errorResponse } from './http-errors.js';

/** A client that has not finished its TLS handshake by then is dropped. */
const handshakeTimeoutMs = 10_000;

export interface TlsHttpOptions {
  /** Address to listen on, e.g. 0.0.0.0, ::, 127.0.0.1. */
  host: string;
  /** 0 picks a free port (see the returned server's `port`). */
  port: number;
  /** PEM certificate and private key. */
  cert: string | Buffer;
  key: string | Buffer;
  /** SHA-256 of the bearer token (hashToken): the token itself is not handed over. */
  tokenHash: Buffer;
  logger?: Logger;
}

export interface TlsHttpServer {
  readonly host: string;
  readonly port: number;
  /** `https://host:port` (IPv6 hosts in brackets). */
  readonly url: string;
  /** Stops accepting and waits for the requests in flight. */
  close(): Promise<void>;
}

/** The SHA-256 of a bearer token, which is all a server keeps of it. */
export function hashToken(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}

/** `handler` behind a bearer token check; `GET /healthz` passes without one. */
export function requireBearerToken(handler: FetchHandler, tokenHash: Buffer, logger = Logger.silent()): FetchHandler {
  if (tokenHash.byteLength !== 32) throw new FerryError('internal', `a bearer token's hash is 32 bytes of SHA-256, received ${tokenHash.byteLength}`);
  const expected = Buffer.from(tokenHash);
  return (request) => {
    const url = new URL(request.url);
    if (request.method === 'GET' && url.pathname === '/healthz') return handler(request);
    const match = /^Bearer +(\S+) *$/i.exec(request.headers.get('authorization') ?? '');
    const presented = match?.[1];
    if (presented !== undefined && timingSafeEqual(hashToken(presented), expected)) return handler(request);
    const reason = presented === undefined ? 'no bearer token' : 'a wrong bearer token';
    logger.warn('control request refused', { reason, method: request.method, path: url.pathname });
    const { status, body } = errorResponse(
      new FerryError('unauthorized', presented === undefined ? 'this control API needs "Authorization: Bearer <token>"' : 'the bearer token was not accepted'),
    );
    return new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json', 'www-authenticate': 'Bearer realm="ferry"' } });
  };
}

/** Listens on host:port with TLS, the handler behind the bearer token. */
export async function serveOverTls(handler: FetchHandler, options: TlsHttpOptions): Promise<TlsHttpServer> {
  const logger = options.logger ?? Logger.silent();
  const listener = nodeRequestListener(requireBearerToken(handler, options.tokenHash, logger), logger);
  // Each connection, by its peer address, with the number of its requests in flight: closing
  // drops the connections without one at once (still in their handshake, or not yet asking
  // anything), rather than waiting for their timeouts, and lets the others finish.
  const connections = new Map<string, { socket: Socket; requests: number }>();
  const peer = (socket: Socket) => `${socket.remoteAddress}|${socket.remotePort}`;
  const server = createServer({ cert: options.cert, key: options.key, minVersion: 'TLSv1.2', handshakeTimeout: handshakeTimeoutMs }, (req, res) => {
    const connection = connections.get(peer(req.socket));
    if (connection) {
      connection.requests++;
      res.once('close', () => connection.requests--);
    }
    listener(req, res);
  });
  server.on('connection', (socket: Socket) => {
    const key = peer(socket);
    connections.set(key, { socket, requests: 0 });
    socket.once('close', () => connections.delete(key));
  });
  // A failed handshake (a scanner, a client that pins another certificate) is the peer's problem.
  server.on('tlsClientError', (err, socket) => {
    logger.debug('TLS handshake failed', { remote: socket.remoteAddress, error: err.message });
  });
  const label = `${hostPort(options.host, options.port)} (TLS)`;
  await listen(server, { host: options.host, port: options.port }, label);
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : options.port;
  return {
    host: options.host,
    port,
    url: `https://${hostPort(options.host, port)}`,
    close: () => {
      const closed = closeServer(server);
      for (const { socket, requests } of connections.values()) if (requests === 0) socket.destroy();
      return closed;
    },
  };
}

function hostPort(host: string, port: number): string {
  return isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`;
}
