import type { PrPoint } from '../knn/index.js';
import type { ModelHistoryEntry, ModelsStatus, ModelVersion } from '../models/index.js';
import type { Role } from './accounts.js';
import { html, jsonBlock, type Html } from './html.js';
import type { LiveFrame } from './live.js';

export interface Viewer {
  /** null: the open loopback UI (no accounts yet). */
  user: string | null;
  role: Role;
  csrf: string;
}

const pages = [
  ['live', 'Live'],
  ['review', 'Review'],
  ['references', 'References'],
  ['threshold', 'Threshold'],
  ['models', 'Models'],
  ['status', 'Status'],
] as const;
export type PageName = (typeof pages)[number][0];

const time = (ms: number): string => new Date(ms).toISOString().replace('T', ' ').slice(0, 19) + 'Z';
const fixed = (x: number, digits = 3): string => (Number.isFinite(x) ? x.toFixed(digits) : 'n/a');
const thumbnail = (id: number): string => `/ui/references/${id}/thumbnail`;
const can = (viewer: Viewer): boolean => viewer.role === 'technician';

/** Every page: the header with the navigation and who is logged in; the CSRF token for the script. */
export function layout(viewer: Viewer, page: PageName, title: string, body: Html): string {
  return html`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="csrf" content="${viewer.csrf}"><title>${title} · linewatch</title>
<link rel="stylesheet" href="/ui/style.css"><script type="module" src="/ui/app.js"></script></head>
<body data-page="${page}" data-role="${viewer.role}">
<header><strong>linewatch</strong><nav>${pages.map(([name, label]) => html`<a href="/ui/${name}"${name === page ? html` aria-current="page"` : ''}>${label}</a>`)}</nav>
<span class="who">${viewer.user === null ? html`open on this device (no accounts)` : html`${viewer.user} (${viewer.role}) <button type="button" data-action="logout">Log out</button>`}</span></header>
<main><h1>${title}</h1><p id="message" role="status"></p>${body}</main></body></html>`.text;
}

export function loginPage(options: { next: string; error?: string }): string {
  return html`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>Log in · linewatch</title>
<link rel="stylesheet" href="/ui/style.css"></head><body><main class="login"><h1>linewatch</h1>
${options.error ? html`<p class="error" role="alert">${options.error}</p>` : ''}
<form method="post" action="/ui/login"><input type="hidden" name="next" value="${options.next}">
<label>Name <input name="name" autocomplete="username" required autofocus></label>
<label>Password <input name="password" type="password" autocomplete="current-password" required></label>
<button type="submit">Log in</button></form></main></body></html>`.text;
}

export function livePage(viewer: Viewer, data: { latest: LiveFrame | undefined; camera: string | null; cameras: string[] }): string {
  const link = (camera: string | null, label: string) =>
    html`<a href="/ui/live${camera === null ? '' : `?camera=${encodeURIComponent(camera)}`}"${camera === data.camera ? html` aria-current="true"` : ''}>${label}</a>`;
  return layout(
    viewer,
    'live',
    'Live',
    html`${data.cameras.length > 1 ? html`<nav class="cameras" aria-label="cameras">${link(null, 'every camera')}${data.cameras.map((c) => link(c, c))}</nav>` : ''}<div class="live"><figure class="frame"><div class="frame-box"><img id="frame" alt="the latest frame"><div id="roi" class="roi" hidden></div></div>
<figcaption id="origin">waiting for frames…</figcaption></figure>
<section><p class="decision" id="decision">–</p><h2>Nearest references</h2><div id="neighbours" class="thumbs"></div>
<h2>Camera and model</h2><dl class="facts"><dt>Frames per second</dt><dd id="fps">–</dd><dt>Dropped frames</dt><dd id="dropped">–</dd>
<dt>Model</dt><dd id="model">–</dd><dt>Provider</dt><dd id="provider">–</dd><dt>Health</dt><dd id="health">–</dd></dl></section></div>
${jsonBlock('live-data', data)}`,
  );
}

export interface ReviewItem {
  eventId: string;
  createdAt: number;
  score: number;
  label: string;
  modelKey: string;
  neighbours: { referenceId: number; label: string; distance: number }[] | null;
  /** The label a person gave it already, if any. */
  labelled: string | null;
}

export function reviewPage(viewer: Viewer, data: { items: ReviewItem[]; labels: string[]; goodLabel: string; filter: { label: string; since: string } }): string {
  const { filter } = data;
  const sinceChoices = [['', 'any time'], ['1h', 'last hour'], ['24h', 'last day'], ['7d', 'last week']] as const;
  return layout(
    viewer,
    'review',
    'Review queue',
    html`<form class="filters" method="get"><label>Label <select name="label"><option value="">all</option>${data.labels.map((l) => html`<option${l === filter.label ? html` selected` : ''}>${l}</option>`)}</select></label>
<label>Since <select name="since">${sinceChoices.map(([value, text]) => html`<option value="${value}"${value === filter.since ? html` selected` : ''}>${text}</option>`)}</select></label><button type="submit">Filter</button></form>
${data.items.length === 0 ? html`<p>No anomalies kept for this filter.</p>` : ''}
<ol class="queue">${data.items.map(
      (item) => html`<li class="anomaly" data-event="${item.eventId}"><a href="/events/${item.eventId}/image"><img src="/events/${item.eventId}/image" alt="anomaly ${item.eventId}"></a>
<div><p><strong class="label">${item.label}</strong> score <span class="score">${fixed(item.score)}</span> · ${time(item.createdAt)} · ${item.modelKey}</p>
<p class="event-id">${item.eventId}</p>
${item.neighbours ? html`<div class="thumbs">${item.neighbours.map(neighbour)}</div>` : html`<p class="note">decided by another model: no neighbours under the active one</p>`}
${item.labelled !== null ? html`<p class="labelled">labelled <strong>${item.labelled}</strong></p>` : ''}
${can(viewer)
  ? html`<div class="actions">${item.label !== 'unknown' ? html`<button type="button" data-action="label" data-label="${item.label}">Confirm ${item.label}</button>` : ''}
<button type="button" data-action="label" data-label="${data.goodLabel}">Mark ${data.goodLabel}</button>
<input class="new-label" placeholder="new label" aria-label="new label" list="labels"><button type="button" data-action="label-new">Give label</button></div>`
  : ''}</div></li>`,
    )}</ol><datalist id="labels">${data.labels.map((l) => html`<option value="${l}">`)}</datalist>`,
  );
}

function neighbour(n: { referenceId: number; label: string; distance: number }): Html {
  return html`<figure class="thumb"><img src="${thumbnail(n.referenceId)}" alt="reference ${n.referenceId}"><figcaption>${n.label} · ${fixed(n.distance)}</figcaption></figure>`;
}

export interface ReferenceRow {
  id: number;
  label: string;
  source: string;
  origin: string;
  createdAt: number;
  confidence: number | null;
  /** The device that added it, and who labeled it (a person's references). */
  device: string | null;
  labeledBy: string | null;
}

export function referencesPage(
  viewer: Viewer,
  data: { references: ReferenceRow[]; byLabel: Record<string, number>; bySource: Record<string, number>; total: number; filter: { label: string; source: string }; offset: number; pageSize: number },
): string {
  const { filter } = data;
  const query = (offset: number) => `?${new URLSearchParams({ ...(filter.label ? { label: filter.label } : {}), ...(filter.source ? { source: filter.source } : {}), offset: String(offset) })}`;
  return layout(
    viewer,
    'references',
    'References',
    html`<p>Total <strong id="reference-total">${data.total}</strong> · ${Object.entries(data.byLabel).map(([l, n]) => html`${l} ${n} `)} · ${Object.entries(data.bySource).map(([s, n]) => html`${s} ${n} `)}</p>
<form class="filters" method="get"><label>Label <select name="label"><option value="">all</option>${Object.keys(data.byLabel).map((l) => html`<option${l === filter.label ? html` selected` : ''}>${l}</option>`)}</select></label>
<label>Source <select name="source"><option value="">all</option>${['human', 'auto', 'peer'].map((s) => html`<option${s === filter.source ? html` selected` : ''}>${s}</option>`)}</select></label><button type="submit">Filter</button></form>
${can(viewer)
  ? html`<form class="enroll" id="enroll"><label>Label <input name="label" required list="known-labels"></label><label>Images <input name="images" type="file" accept="image/jpeg,image/png" multiple required></label><button type="submit">Enroll</button></form>
<datalist id="known-labels">${Object.keys(data.byLabel).map((l) => html`<option value="${l}">`)}</datalist>
<p><button type="button" data-action="remove-selected">Remove selected</button></p>`
  : ''}
<ul class="references">${data.references.map(
      (r) => html`<li data-reference="${r.id}"><label>${can(viewer) ? html`<input type="checkbox" class="pick" value="${r.id}">` : ''}<img src="${thumbnail(r.id)}" alt="reference ${r.id}" loading="lazy"></label>
<p><strong>${r.label}</strong> #${r.id}</p><p class="note">${r.source}${r.confidence !== null ? html` (${fixed(r.confidence, 2)})` : ''} · ${time(r.createdAt)}</p><p class="note origin" title="${r.origin}">${r.origin}</p><p class="note who">${r.labeledBy ? html`labeled by ${r.labeledBy}` : ''}${r.device ? html` on ${r.device}` : ''}</p></li>`,
    )}</ul>
<p class="pager">${data.offset > 0 ? html`<a href="${query(Math.max(0, data.offset - data.pageSize))}">newer</a> ` : ''}${data.references.length === data.pageSize ? html`<a href="${query(data.offset + data.pageSize)}">older</a>` : ''}</p>`,
  );
}

export function thresholdPage(
  viewer: Viewer,
  data: { curve: PrPoint[]; references: number; note: string | null; threshold: number; today: { frames: number; histogram: number[] } },
): string {
  const w = 400, h = 240;
  const x = (t: number) => (t * w).toFixed(1);
  const y = (v: number) => (h - v * h).toFixed(1);
  // Steps: a threshold t flags what the lowest curve point at or above t flags, so each point's
  // value holds from the point below it up to its own threshold; above the highest, nothing is flagged.
  const line = (pick: (p: PrPoint) => number) => {
    let from = 0;
    return [...data.curve]
      .sort((a, b) => a.threshold - b.threshold)
      .map((p) => {
        const step = `${x(from)},${y(pick(p))} ${x(p.threshold)},${y(pick(p))}`;
        from = p.threshold;
        return step;
      })
      .join(' ');
  };
  return layout(
    viewer,
    'threshold',
    'Threshold tuning',
    html`${data.note ? html`<p class="error">${data.note}</p>` : html`<p>Leave-one-out over ${data.references} references (confirmed review labels included): each is decided by the others.</p>`}
<svg class="curve" viewBox="-30 -10 ${w + 40} ${h + 40}" role="img" aria-label="precision and recall against the threshold">
<rect x="0" y="0" width="${w}" height="${h}" class="plot"/><polyline class="precision" points="${line((p) => p.precision)}"/><polyline class="recall" points="${line((p) => p.recall)}"/>
<line id="marker" class="marker" x1="0" x2="0" y1="0" y2="${h}"/><text x="0" y="${h + 16}">0</text><text x="${w - 8}" y="${h + 16}">1</text><text x="-26" y="6">1</text><text x="${w / 2 - 30}" y="${h + 28}">threshold</text></svg>
<p class="legend"><span class="precision">precision</span> <span class="recall">recall</span></p>
<label class="slider">Threshold <input id="threshold" type="range" min="0" max="1" step="0.01" value="${data.threshold}"> <output id="threshold-value">${fixed(data.threshold, 2)}</output></label>
<dl class="facts"><dt>In force</dt><dd id="current-threshold">${fixed(data.threshold, 2)}</dd><dt>Expected precision</dt><dd id="expected-precision">–</dd><dt>Expected recall</dt><dd id="expected-recall">–</dd>
<dt>Today's frames flagged</dt><dd id="flagged">–</dd></dl>
${can(viewer) ? html`<button type="button" data-action="apply-threshold">Apply</button>` : ''}
${jsonBlock('threshold-data', { curve: data.curve, today: data.today, width: w })}`,
  );
}

export function modelsPage(viewer: Viewer, data: { list: { active: string; previous: string | null; versions: ModelVersion[]; history: ModelHistoryEntry[] }; status: ModelsStatus }): string {
  const { list, status } = data;
  const gateOf = (gate: unknown): string => (gate && typeof gate === 'object' && 'reason' in gate ? String((gate as { reason: unknown }).reason) : '–');
  return layout(
    viewer,
    'models',
    'Models',
    html`<p>Active <strong id="active-model">${list.active}</strong> on ${status.active.provider} since ${status.active.since}${list.previous ? html` · a rollback brings back <strong>${list.previous}</strong>` : ''}</p>
<p id="staging">${status.staging ? html`staging ${status.staging.key ?? 'a bundle'}: ${status.staging.step}` : ''}</p>
${can(viewer)
  ? html`<form id="upload" class="enroll"><label>Signed bundle (.tar.gz) <input name="bundle" type="file" accept=".gz,.tgz,application/gzip" required></label><button type="submit">Upload</button>
<progress id="upload-progress" max="1" value="0" hidden></progress></form>
${list.previous ? html`<p><button type="button" data-action="rollback">Roll back to ${list.previous}</button></p>` : ''}`
  : ''}
<table class="models"><thead><tr><th>Version</th><th>Precision</th><th>From</th><th>Signed by</th><th>Added</th><th>Gate</th><th></th></tr></thead><tbody>
${list.versions.map(
  (v) => html`<tr data-key="${v.key}"${v.key === list.active ? html` class="active"` : ''}><td>${v.key}</td><td>${v.precision}</td><td>${v.origin}</td><td>${v.signedBy ?? '–'}</td><td>${time(v.addedAt)}</td><td class="gate">${gateOf(v.gate)}</td>
<td>${v.key === list.active ? 'active' : can(viewer) ? html`<button type="button" data-action="activate" data-key="${v.key}">Activate</button>` : ''}</td></tr>`,
)}</tbody></table>
<h2>History</h2><table><thead><tr><th>When</th><th>What</th><th>Model</th><th>From</th><th>Via</th></tr></thead><tbody>
${list.history.map((e) => html`<tr><td>${time(e.at)}</td><td>${e.action}${e.forced ? ' (forced)' : ''}</td><td>${e.key}</td><td>${e.fromKey ?? '–'}</td><td>${e.via}</td></tr>`)}</tbody></table>`,
  );
}

export interface StatusView {
  state: string;
  problems: string[];
  events: { backlog: number; mqtt: { connected: boolean; url: string; lastError: string | null } | null };
}

export function statusPage(
  viewer: Viewer,
  data: { status: StatusView; health: { ok: boolean; failing: string[]; warnings: string[] }; needRestart: string[]; config: unknown },
): string {
  const { status, health } = data;
  const mqtt = status.events.mqtt;
  return layout(
    viewer,
    'status',
    'Status',
    html`<dl class="facts"><dt>Health</dt><dd id="health-state" class="${health.ok ? 'ok' : 'bad'}">${health.ok ? 'ok' : 'failing'}</dd><dt>Daemon</dt><dd>${status.state}</dd>
<dt>Outbox backlog</dt><dd id="backlog">${status.events.backlog} events</dd>
<dt>Broker</dt><dd id="broker">${mqtt ? html`${mqtt.connected ? 'connected to' : 'not connected to'} ${mqtt.url}${mqtt.lastError ? html` (${mqtt.lastError})` : ''}` : 'MQTT is off'}</dd>
<dt>Waiting for a restart</dt><dd id="need-restart">${data.needRestart.length > 0 ? data.needRestart.join(', ') : 'nothing'}</dd></dl>
<h2>Problems</h2>${[...health.failing, ...status.problems].length > 0 ? html`<ul class="problems">${[...new Set([...health.failing, ...status.problems])].map((p) => html`<li>${p}</li>`)}</ul>` : html`<p>None.</p>`}
<h2>Configuration in effect</h2><pre class="config">${JSON.stringify(data.config, null, 2)}</pre>`,
  );
}
