/**
 * The wizard API on a TCP address, plain HTTP (@hono/node-server, which streams responses:
 * the progress events to come need it). Meant for loopback: TLS comes with the agents'
 * transport.
 */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { isIPv6 } from 'node:net';
import { createAdaptorServer } from '@hono/node-server';
import { FerryError } from '../../core/index.js';
import type { WizardApp } from './common.js';

export interface WizardHttpServer {
  readonly host: string;
  readonly port: number;
  /** `http://host:port` (an IPv6 host in brackets). */
  readonly url: string;
  /** Stops accepting, waits for the requests in flight (cut after `graceMs`). */
  close(graceMs?: number): Promise<void>;
}

/** Listens on host:port (port 0: a free one). */
export async function serveWizardApi(app: WizardApp, host: string, port: number): Promise<WizardHttpServer> {
  const server = createAdaptorServer({ fetch: app.fetch }) as Server;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  }).catch((err: NodeJS.ErrnoException) => {
    const code = err.code === 'EADDRINUSE' || err.code === 'EACCES' ? 'invalid-state' : err.code === 'EADDRNOTAVAIL' || err.code === 'ENOTFOUND' ? 'bad-input' : 'io';
    throw new FerryError(code, `cannot listen on ${hostPort(host, port)}: ${err.message}`, { cause: err });
  });
  const bound = (server.address() as AddressInfo).port;
  return {
    host,
    port: bound,
    url: `http://${hostPort(host, bound)}`,
    close: (graceMs = 5000) =>
      new Promise<void>((resolve) => {
        const cut = setTimeout(() => server.closeAllConnections(), graceMs);
        server.close(() => {
          clearTimeout(cut);
          resolve();
        });
        server.closeIdleConnections();
      }),
  };
}

function hostPort(host: string, port: number): string {
  return isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`;
}
