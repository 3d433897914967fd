import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { UserError, type Logger } from '../common/index.js';

export type Route = (req: IncomingMessage) => { status: number; type: string; body: string } | Promise<{ status: number; type: string; body: string }>;

/** A small local HTTP server for status (and health/metrics); bound to 127.0.0.1 unless configured. */
export class StatusServer {
  private constructor(
    private readonly server: Server,
    readonly url: string,
  ) {}

  static async listen(host: string, port: number, routes: Record<string, Route>, log: Logger): Promise<StatusServer> {
    const server = createServer((req, res) => void handle(routes, req, res, log));
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) =>
        reject(
          new UserError(
            `cannot serve status on ${host}:${port} (${err.code ?? err.message})`,
            err.code === 'EADDRINUSE' ? 'another process (another linewatch?) uses that port: set http.port, or stop the other one' : 'check http.host and http.port',
          ),
        ),
      );
      server.listen(port, host, () => resolve());
    });
    const address = server.address() as AddressInfo;
    const shownHost = address.family === 'IPv6' ? `[${address.address}]` : address.address;
    return new StatusServer(server, `http://${shownHost}:${address.port}`);
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }
}

async function handle(routes: Record<string, Route>, req: IncomingMessage, res: ServerResponse, log: Logger): Promise<void> {
  const path = new URL(req.url ?? '/', 'http://localhost').pathname;
  const route = routes[path];
  try {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    if (!route) {
      res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ error: `no such path ${path}`, paths: Object.keys(routes) }));
      return;
    }
    const answer = await route(req);
    res.writeHead(answer.status, { 'content-type': answer.type, 'cache-control': 'no-store' }).end(req.method === 'HEAD' ? undefined : answer.body);
  } catch (err) {
    log.error('status request failed', { path, error: err });
    if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: 'internal error' }));
  }
}
