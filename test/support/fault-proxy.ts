/**
 * A fault-injecting HTTP proxy in front of an S3 server, for tests: each request is, by a
 * seeded draw, answered 503 SlowDown (as S3 throttles), cut (the connection reset before
 * any reply), stalled (headers, part of a body, then silence; or no reply to an upload),
 * delayed, or passed through. The plan can change while it runs (a store that goes down
 * and comes back).
 */
import { createServer, request, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { createPrng } from './random-workload.js';

export interface FaultPlan {
  /** Shares of requests answered 503 SlowDown, reset, stalled (0..1 each; the rest pass). */
  slowDown?: number;
  reset?: number;
  stall?: number;
  /** Added to every request that passes. */
  latencyMs?: number;
}

export interface FaultProxy {
  endpoint: string;
  /** What it did so far. */
  counts: { requests: number; slowDown: number; reset: number; stall: number; passed: number };
  setPlan(plan: FaultPlan): void;
  stop(): Promise<void>;
}

export async function startFaultProxy(target: string, plan: FaultPlan, seed: number): Promise<FaultProxy> {
  const upstream = new URL(target);
  const draw = createPrng(seed); // seeded, so a failing run can be told by its seed
  const counts = { requests: 0, slowDown: 0, reset: 0, stall: 0, passed: 0 };
  const sockets = new Set<Socket>();
  let current = plan;

  const pass = (req: IncomingMessage, res: ServerResponse) => {
    const forward = request({ host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers }, (reply) => {
      res.writeHead(reply.statusCode ?? 502, reply.headers);
      reply.pipe(res);
    });
    forward.on('error', () => res.destroy());
    req.pipe(forward);
  };

  const server = createServer((req, res) => {
    counts.requests++;
    const x = draw();
    const { slowDown = 0, reset = 0, stall = 0 } = current;
    if (x < slowDown) {
      counts.slowDown++;
      req.resume();
      req.on('end', () => {
        res.writeHead(503, { 'content-type': 'application/xml' });
        res.end('<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>');
      });
    } else if (x < slowDown + reset) {
      counts.reset++;
      req.socket.destroy();
    } else if (x < slowDown + reset + stall) {
      counts.stall++;
      req.resume();
      // A download starts and goes silent; an upload is never answered.
      if (req.method === 'GET') {
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': '1048576' });
        res.write(Buffer.alloc(1000));
      }
    } else {
      counts.passed++;
      if (current.latencyMs) setTimeout(() => pass(req, res), current.latencyMs);
      else pass(req, res);
    }
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    counts,
    setPlan: (next) => void (current = next),
    stop: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
