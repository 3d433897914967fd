import type { AnomalyImages } from '../events/index.js';
import { RequestError } from '../common/index.js';
import { failure, replyStatus, type ControlApi, type HttpAnswer, type HttpRequest, type HttpRoute, type Reply, type Via } from '../control/index.js';
import type { Health } from './health.js';
import type { DaemonMetrics } from './metrics.js';

const json = (status: number, value: unknown): HttpAnswer => ({ status, body: JSON.stringify(value, null, 2) });
const answer = (reply: Reply): HttpAnswer => json(replyStatus(reply), reply);

/**
 * The HTTP face of the daemon: health and metrics for monitors, anomaly images, and the control
 * API (the same commands as MQTT and the CLI). Reads are open on loopback; writes need the token.
 */
export function httpRoutes(parts: {
  api: ControlApi;
  images: AnomalyImages;
  metrics: DaemonMetrics;
  health: () => Health;
  /** The web UI's logged-in user a request comes from (null: the open UI), when the UI is on. */
  sessionUser?: (req: HttpRequest) => string | null;
}): HttpRoute[] {
  const { api, images, metrics } = parts;
  return [
    { method: 'GET', path: '/status', access: 'read', handle: async () => {
      const reply = await api.call('status', {}, 'http');
      return reply.ok ? json(200, reply.result) : answer(reply);
    } },
    { method: 'GET', path: '/healthz', access: 'read', handle: () => {
      const health = parts.health();
      return json(health.ok ? 200 : 503, health);
    } },
    { method: 'GET', path: '/metrics', access: 'read', handle: async () => ({ status: 200, type: metrics.contentType, body: await metrics.render() }) },
    { method: 'GET', path: '/events/:id/image', access: 'read', handle: (req) => {
      const kept = images.get(req.params['id'] ?? '');
      if (!kept) {
        return answer(failure(new RequestError('unknown_event', `no image is kept for event ${req.params['id']}`, 'images of old events are removed by retention (images.*)', 404)));
      }
      return { status: 200, type: kept.contentType, body: kept.image, headers: { 'cache-control': 'private, max-age=86400, immutable' } };
    } },
    { method: 'GET', path: '/models', access: 'read', handle: async () => answer(await api.call('model.list', {}, 'http')) },
    // A bundle archive as the body, as `curl --data-binary @bundle.tar.gz` sends it.
    { method: 'POST', path: '/models', access: 'write', handle: async (req) =>
      answer(await api.call('model.push', { bundle: req.body.toString('base64'), ...(isTrue(req.query.get('force')) ? { force: true } : {}) }, via(req))) },
    // Any command, JSON parameters as the body.
    { method: 'POST', path: '/control/:command', access: 'write', handle: async (req) => {
      const name = req.params['command'] ?? '';
      let params: unknown = {};
      if (req.body.length > 0) {
        try {
          params = JSON.parse(req.body.toString('utf8'));
        } catch (err) {
          return answer(failure(new RequestError('bad_json', `the request body is not JSON: ${(err as Error).message}`, 'send a JSON object, e.g. {"threshold": 0.6}')));
        }
      }
      const asking = via(req);
      return answer(await api.call(name, params, asking, userOf(req, asking, parts.sessionUser)));
    } },
  ];
}

/** The linewatch CLI and the web UI say they are the ones asking, so the log and the model history tell them apart from other HTTP clients. */
function via(req: HttpRequest): Via {
  const client = req.headers['x-linewatch-client'];
  return client === 'cli' || client === 'ui' ? client : 'http';
}

/**
 * The person behind a request: the web UI's session user (from the server's own session, never a
 * header), or the OS user the CLI names (it holds the token, which already allows everything).
 */
function userOf(req: HttpRequest, asking: Via, sessionUser?: (req: HttpRequest) => string | null): string | undefined {
  if (asking === 'ui') return sessionUser?.(req) ?? undefined;
  const named = req.headers['x-linewatch-user'];
  return asking === 'cli' && typeof named === 'string' && /^[\w.@-]{1,64}$/.test(named) ? named : undefined;
}

function isTrue(value: string | null): boolean {
  return value === '1' || value === 'true' || value === 'yes';
}
