import { redactSecrets } from '../common/index.js';
import type { Config } from '../config/index.js';
import { isLoopback, type Authorize, type ControlApi, type HttpAnswer, type HttpRequest, type HttpRoute } from '../control/index.js';
import type { AnomalyImages } from '../events/index.js';
import { leaveOneOutSamples, precisionRecallCurve, type ReferenceSource, type ReferenceStore } from '../knn/index.js';
import type { ModelManager } from '../models/index.js';
import { Accounts } from './accounts.js';
import { appScript, styleSheet } from './assets.js';
import { LiveView } from './live.js';
import { livePage, loginPage, modelsPage, referencesPage, reviewPage, statusPage, thresholdPage, type PageName, type ReviewItem, type StatusView, type Viewer } from './pages.js';
import { LoginLimiter, Sessions, type Session } from './sessions.js';

/** What the web UI reads: the daemon's modules, handed over by the composition root. */
export interface UiParts {
  api: ControlApi;
  store: ReferenceStore;
  models: ModelManager;
  images: AnomalyImages;
  config: () => Config;
  status: () => StatusView & { capture: { framesReceived: number; framesDropped: number; droppedWhileBusy: number }; cameras: { key: string }[]; model: { provider: string } };
  health: () => { ok: boolean; failing: string[]; warnings: string[] };
  needRestart: () => string[];
}

const cookieName = 'linewatch_session';
const pageSecurity = {
  'content-security-policy': "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'same-origin',
};
const statusTickMs = 1000;
const referencePageSize = 60;
const sinceMs: Record<string, number> = { '1h': 3600_000, '24h': 86_400_000, '7d': 7 * 86_400_000 };

const json = (status: number, value: unknown, headers?: Record<string, string>): HttpAnswer => ({ status, body: JSON.stringify(value), ...(headers ? { headers } : {}) });
const refusal = (status: number, code: string, message: string, hint: string): HttpAnswer => json(status, { schema: 'linewatch/reply/1', ok: false, error: { code, message, hint } });
const redirect = (location: string, headers: Record<string, string> = {}): HttpAnswer => ({ status: 303, body: '', type: 'text/plain', headers: { location, ...headers } });

function imageType(data: Buffer): string {
  return data[0] === 0x89 && data[1] === 0x50 ? 'image/png' : 'image/jpeg';
}

function cookieOf(req: Pick<HttpRequest, 'headers'>): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const [name, value] = part.trim().split('=');
    if (name === cookieName) return value;
  }
  return undefined;
}

/**
 * The technician web UI: its pages and their data as routes of the daemon's ControlServer, and
 * the sessions that let a browser through the server's `authorize` hook. It changes nothing
 * itself: the pages' buttons call the control API's routes (POST /control/<name>, POST /models)
 * with the session cookie and its CSRF token.
 */
export class WebUi {
  readonly live = new LiveView();
  readonly routes: HttpRoute[];
  private readonly sessions: Sessions;
  private readonly limiter: LoginLimiter;
  private readonly open = new Set<HttpRoute>();
  private readonly own = new Set<HttpRoute>();
  /** Where the server listens is fixed at start (http.host needs a restart). */
  private readonly onLoopback: boolean;

  constructor(
    private readonly parts: UiParts,
    readonly accounts: Accounts,
  ) {
    const { ui, http } = parts.config();
    this.onLoopback = http.host === 'localhost' || isLoopback(http.host);
    this.sessions = new Sessions(ui.sessionIdleMinutes * 60_000);
    this.limiter = new LoginLimiter(ui.loginAttemptsPerMinute);
    const page = (name: PageName, render: (viewer: Viewer, req: HttpRequest) => string): HttpRoute => ({
      method: 'GET',
      path: `/ui/${name}`,
      access: 'read',
      handle: (req) => this.page(req, render),
    });
    const open: HttpRoute[] = [
      { method: 'GET', path: '/ui/login', access: 'read', handle: (req) => this.html(200, loginPage({ next: this.next(req.query.get('next')) })) },
      { method: 'POST', path: '/ui/login', access: 'write', handle: (req) => this.login(req) },
      { method: 'GET', path: '/ui/app.js', access: 'read', handle: () => ({ status: 200, type: 'text/javascript; charset=utf-8', body: appScript }) },
      { method: 'GET', path: '/ui/style.css', access: 'read', handle: () => ({ status: 200, type: 'text/css; charset=utf-8', body: styleSheet }) },
    ];
    const guarded: HttpRoute[] = [
      { method: 'GET', path: '/', access: 'read', handle: () => redirect('/ui/live') },
      { method: 'GET', path: '/ui', access: 'read', handle: () => redirect('/ui/live') },
      { method: 'POST', path: '/ui/logout', access: 'write', handle: (req) => this.logout(req) },
      page('live', (viewer, req) => {
        const cameras = parts.status().cameras.map((c) => c.key);
        // One camera's frames (?camera=site/line/camera), or every camera's: an unknown name shows them all.
        const asked = req.query.get('camera');
        const camera = asked !== null && cameras.includes(asked) ? asked : null;
        return livePage(viewer, { latest: this.live.latest(camera ?? undefined), camera, cameras });
      }),
      page('review', (viewer, req) => this.review(viewer, req)),
      page('references', (viewer, req) => this.references(viewer, req)),
      page('threshold', (viewer) => this.threshold(viewer)),
      page('models', (viewer) => {
        return modelsPage(viewer, { list: parts.models.list(), status: parts.models.status() });
      }),
      page('status', (viewer) => statusPage(viewer, { status: parts.status(), health: parts.health(), needRestart: parts.needRestart(), config: redactSecrets(parts.config()) })),
      { method: 'GET', path: '/ui/stream', access: 'read', handle: (req) => this.stream(req.query.get('camera') ?? undefined) },
      { method: 'GET', path: '/ui/frames/:id', access: 'read', handle: async (req) => {
        const data = await this.live.frame(Number(req.params['id']));
        return data ? { status: 200, type: imageType(data), body: data } : refusal(404, 'gone', `frame ${req.params['id']} is no longer kept`, 'the live page shows the latest frame');
      } },
      { method: 'GET', path: '/ui/references/:id/thumbnail', access: 'read', handle: (req) => {
        const thumbnail = parts.store.get(Number(req.params['id']))?.thumbnail;
        if (!thumbnail) return refusal(404, 'unknown_reference', `reference ${req.params['id']} has no thumbnail`, 'it was removed, or enrolled without an image');
        return { status: 200, type: imageType(thumbnail), body: thumbnail, headers: { 'cache-control': 'private, max-age=86400, immutable' } };
      } },
    ];
    for (const r of open) this.open.add(r);
    this.routes = [...open, ...guarded];
    for (const r of this.routes) this.own.add(r);
  }

  /**
   * The ControlServer's authorize hook. UI pages need a session (or the open loopback UI); the
   * API's routes take a session as an alternative to the token: any role reads, a technician
   * writes with the session's CSRF token. A request with a token, or without a session, is left
   * to the token rule.
   */
  readonly authorize: Authorize = (req, route) => {
    if (this.open.has(route)) return 'allow';
    const session = this.sessionOf(req);
    if (this.own.has(route)) {
      if (session) return route.access === 'write' ? this.checkWrite(session, req) : 'allow';
      if (route.access === 'read' && this.isOpen(req)) return 'allow';
      if (route.method === 'GET' && route.path !== '/ui/stream' && !route.path.includes(':')) return redirect(`/ui/login?next=${encodeURIComponent(req.path)}`);
      return refusal(401, 'unauthorized', 'log in first', 'open /ui/login');
    }
    if (req.headers.authorization !== undefined || !session) return 'token';
    return route.access === 'write' ? this.checkWrite(session, req) : 'allow';
  };

  close(): void {
    this.live.close();
  }

  private checkWrite(session: Session, req: Omit<HttpRequest, 'body'>): 'allow' | HttpAnswer {
    if (session.role !== 'technician') return refusal(403, 'forbidden', 'a viewer account cannot change anything', 'log in as a technician');
    if (req.headers['x-csrf-token'] !== session.csrf) return refusal(403, 'csrf', 'the request does not carry this session\'s CSRF token', 'reload the page and try again');
    return 'allow';
  }

  /** The logged-in user a request comes from (null: the open UI), for the provenance of what they label. */
  readonly sessionUser = (req: Omit<HttpRequest, 'body'>): string | null => this.sessionOf(req)?.user ?? null;

  /** The session the cookie names; the open one only while the UI is still open. */
  private sessionOf(req: Omit<HttpRequest, 'body'>): Session | undefined {
    const session = this.sessions.get(cookieOf(req));
    if (session?.user === null && !this.isOpen(req)) {
      this.sessions.end(session.id);
      return undefined;
    }
    return session;
  }

  /**
   * Loopback only, and only until the first account exists: then the UI is open to whoever sits
   * at the device (as the token's file is), as a technician. On the plant LAN, never.
   */
  private isOpen(req: Pick<HttpRequest, 'remoteAddress'>): boolean {
    return this.onLoopback && isLoopback(req.remoteAddress) && this.accounts.count() === 0;
  }

  private page(req: HttpRequest, render: (viewer: Viewer, req: HttpRequest) => string): HttpAnswer {
    let session = this.sessionOf(req);
    let cookie: string | undefined;
    if (!session) {
      // authorize let it through without a cookie: the open UI, whose session starts here.
      session = this.sessions.create(null, 'technician');
      cookie = this.cookie(session.id);
    }
    return this.html(200, render(session, req), cookie ? { 'set-cookie': cookie } : {});
  }

  private html(status: number, body: string, headers: Record<string, string> = {}): HttpAnswer {
    return { status, type: 'text/html; charset=utf-8', body, headers: { ...pageSecurity, ...headers } };
  }

  private cookie(id: string, maxAge?: number): string {
    return `${cookieName}=${id}; Path=/; HttpOnly; SameSite=Strict${maxAge !== undefined ? `; Max-Age=${maxAge}` : ''}`;
  }

  /** Only a page of this UI: never a redirect elsewhere. */
  private next(value: string | null): string {
    return value && /^\/ui\/[a-z]+$/.test(value) ? value : '/ui/live';
  }

  private async login(req: HttpRequest): Promise<HttpAnswer> {
    const form = new URLSearchParams(req.body.toString('utf8'));
    const name = form.get('name') ?? '';
    const next = this.next(form.get('next'));
    const keys = [`address:${req.remoteAddress}`, `name:${name}`];
    const wait = this.limiter.wait(keys);
    if (wait > 0) return this.html(429, loginPage({ next, error: `too many failed logins: try again in ${wait} s` }), { 'retry-after': String(wait) });
    const role = await this.accounts.check(name, form.get('password') ?? '');
    if (!role) {
      this.limiter.failed(keys);
      return this.html(401, loginPage({ next, error: 'wrong name or password' }));
    }
    const previous = cookieOf(req);
    if (previous) this.sessions.end(previous);
    const session = this.sessions.create(name, role);
    return redirect(next, { 'set-cookie': this.cookie(session.id) });
  }

  private logout(req: HttpRequest): HttpAnswer {
    const id = cookieOf(req);
    if (id) this.sessions.end(id);
    return json(200, { ok: true }, { 'set-cookie': this.cookie('', 0) });
  }

  /** Server-sent events: `frame` (the latest decided frame of `camera`, or of any, at most 5 a second) and `status` (every second). */
  private stream(camera: string | undefined): HttpAnswer {
    const latest = this.live.latest(camera);
    const event = (name: string, data: unknown) => `event: ${name}\ndata: ${JSON.stringify(data)}\n\n`;
    return {
      status: 200,
      type: 'text/event-stream',
      headers: { 'x-accel-buffering': 'no' },
      body: 'retry: 2000\n\n' + (latest ? event('frame', latest) : '') + event('status', this.statusTick()),
      stream: (write, closed) => {
        const unsubscribe = this.live.subscribe((frame) => write(event('frame', frame)), camera);
        const timer = setInterval(() => write(event('status', this.statusTick())), statusTickMs);
        closed.addEventListener('abort', () => {
          unsubscribe();
          clearInterval(timer);
        });
      },
    };
  }

  private statusTick(): unknown {
    const s = this.parts.status();
    const models = this.parts.models.status();
    return {
      at: Date.now(),
      health: this.parts.health(),
      frames: s.capture.framesReceived,
      dropped: s.capture.framesDropped + s.capture.droppedWhileBusy,
      model: models.active.key,
      provider: s.model.provider,
      staging: models.staging,
      backlog: s.events.backlog,
    };
  }

  private review(viewer: Viewer, req: HttpRequest): string {
    const { images, store, models } = this.parts;
    const label = req.query.get('label') ?? '';
    const since = req.query.get('since') ?? '';
    const after = sinceMs[since] !== undefined ? Date.now() - sinceMs[since]! : 0;
    const active = models.active;
    const items: ReviewItem[] = images
      .list({ limit: 50, ...(label ? { label } : {}) })
      .filter((info) => info.createdAt >= after)
      .map((info) => {
        const kept = info.modelKey === active.key ? images.get(info.eventId) : undefined;
        const found = kept ? active.index.search(kept.vector, active.classifier.settings.k) : null;
        const labels = store.labelsOf(found?.map((n) => n.referenceId) ?? []);
        const labelled = store.labelsOf(store.idsOfOrigin(`event:${info.eventId}`));
        return {
          ...info,
          neighbours: found && found.map((n) => ({ referenceId: n.referenceId, distance: n.distance, label: labels.get(n.referenceId) ?? '?' })),
          labelled: [...labelled.values()][0] ?? null,
        };
      });
    const labels = [...new Set([...store.countByLabel().keys(), ...items.map((i) => i.label)])].sort();
    return reviewPage(viewer, { items, labels, goodLabel: active.classifier.settings.goodLabel, filter: { label, since } });
  }

  private references(viewer: Viewer, req: HttpRequest): string {
    const { store } = this.parts;
    const label = req.query.get('label') ?? '';
    const source = req.query.get('source') ?? '';
    const offset = Math.max(0, Math.floor(Number(req.query.get('offset') ?? 0)) || 0);
    const references = store.list({
      ...(label ? { label } : {}),
      ...(['human', 'auto', 'peer'].includes(source) ? { source: source as ReferenceSource } : {}),
      limit: referencePageSize,
      offset,
    });
    return referencesPage(viewer, {
      references,
      byLabel: Object.fromEntries(store.countByLabel()),
      bySource: Object.fromEntries(store.countBySource()),
      total: store.count(),
      filter: { label, source },
      offset,
      pageSize: referencePageSize,
    });
  }

  private threshold(viewer: Viewer): string {
    const active = this.parts.models.active;
    const settings = active.classifier.settings;
    const found = leaveOneOutSamples(this.parts.store, active.key, active.bundle.manifest.output.dimension, settings);
    const samples = 'samples' in found ? found.samples : [];
    return thresholdPage(viewer, {
      curve: precisionRecallCurve(samples, settings.goodLabel),
      references: samples.length,
      note: 'note' in found ? found.note : null,
      threshold: settings.threshold,
      today: this.live.todaysScores(),
    });
  }
}
