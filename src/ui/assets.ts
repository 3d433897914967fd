/**
 * The one script and style sheet of the web UI, shipped inside the package (dist/) with no build
 * step and nothing fetched from elsewhere. Pages are rendered on the server; the script only
 * streams the live view, sends the buttons' commands through the control API's routes (with the
 * session's CSRF token), and moves the threshold slider.
 */
export const appScript = String.raw`
const $ = (selector, root) => (root || document).querySelector(selector);
const $$ = (selector, root) => Array.from((root || document).querySelectorAll(selector));
const csrf = $('meta[name=csrf]') ? $('meta[name=csrf]').content : '';
const page = document.body.dataset.page;
const headers = { 'x-csrf-token': csrf, 'x-linewatch-client': 'ui' };
const fixed = (x, digits) => (typeof x === 'number' && isFinite(x) ? x.toFixed(digits === undefined ? 3 : digits) : 'n/a');

function say(text, bad) {
  const box = $('#message');
  if (!box) return;
  box.textContent = text;
  box.className = bad ? 'error' : 'done';
}

// Every change is a control API command: the reply says what happened, or why not.
async function call(command, params) {
  const response = await fetch('/control/' + command, { method: 'POST', headers: Object.assign({ 'content-type': 'application/json' }, headers), body: JSON.stringify(params || {}) });
  const reply = await response.json().catch(() => ({ ok: false, error: { message: 'HTTP ' + response.status } }));
  if (!reply.ok) say(reply.error.message + (reply.error.hint ? ' (' + reply.error.hint + ')' : ''), true);
  return reply;
}

function thumb(n) {
  const figure = document.createElement('figure');
  figure.className = 'thumb';
  const img = document.createElement('img');
  img.src = '/ui/references/' + n.referenceId + '/thumbnail';
  img.alt = 'reference ' + n.referenceId;
  const caption = document.createElement('figcaption');
  caption.textContent = n.label + ' · ' + fixed(n.distance);
  figure.append(img, caption);
  return figure;
}

function data(id) {
  const block = document.getElementById(id);
  return block ? JSON.parse(block.textContent) : null;
}

document.addEventListener('click', async (e) => {
  const button = e.target.closest('button[data-action]');
  if (!button) return;
  const action = button.dataset.action;
  if (action === 'logout') {
    await fetch('/ui/logout', { method: 'POST', headers });
    location.href = '/ui/login';
  } else if (action === 'label' || action === 'label-new') {
    const item = button.closest('[data-event]');
    const label = action === 'label' ? button.dataset.label : $('.new-label', item).value.trim();
    if (!label) return say('type the new label first', true);
    button.disabled = true;
    const reply = await call('label', { event: item.dataset.event, label });
    button.disabled = false;
    if (reply.ok) {
      let done = $('.labelled', item);
      if (!done) {
        done = document.createElement('p');
        done.className = 'labelled';
        $('.actions', item).before(done);
      }
      done.textContent = 'labelled ' + label + ' (reference #' + reply.result.referenceId + ')';
      say('labelled ' + label + ': the next decisions use it');
    }
  } else if (action === 'remove-selected') {
    const ids = $$('input.pick:checked').map((box) => Number(box.value));
    if (ids.length === 0) return say('select references first', true);
    const reply = await call('reference.remove', { ids });
    if (reply.ok) location.reload();
  } else if (action === 'apply-threshold') {
    const threshold = Number($('#threshold').value);
    const reply = await call('classifier.set', { threshold });
    if (reply.ok) {
      $('#current-threshold').textContent = fixed(reply.result.settings.threshold, 2);
      say('threshold ' + fixed(threshold, 2) + ' is in force');
    }
  } else if (action === 'activate' || action === 'rollback') {
    button.disabled = true;
    const reply = action === 'activate' ? await call('model.activate', { key: button.dataset.key }) : await call('model.rollback', {});
    if (reply.ok) location.reload();
    button.disabled = false;
  }
});

function live() {
  const seen = data('live-data');
  const img = $('#frame');
  const roi = $('#roi');
  let last = null;
  // The frame's camera's ROI, null when the frame is the ROI already (a raw camera frame).
  let box = null;
  // The ROI box in percent of the frame, once its size is known.
  img.addEventListener('load', () => {
    roi.hidden = true;
    if (!box || !img.naturalWidth) return;
    roi.hidden = false;
    roi.style.left = (100 * box.x) / img.naturalWidth + '%';
    roi.style.top = (100 * box.y) / img.naturalHeight + '%';
    roi.style.width = (100 * box.width) / img.naturalWidth + '%';
    roi.style.height = (100 * box.height) / img.naturalHeight + '%';
  });
  const source = new EventSource('/ui/stream' + (seen.camera ? '?camera=' + encodeURIComponent(seen.camera) : ''));
  source.addEventListener('frame', (e) => {
    const f = JSON.parse(e.data);
    box = f.cropped ? null : f.roi;
    img.src = '/ui/frames/' + f.id;
    $('#origin').textContent = (seen.cameras.length > 1 && f.camera ? f.camera + ' ' : '') + '#' + f.seq + ' ' + f.origin;
    const decision = $('#decision');
    decision.textContent = (f.anomaly ? 'ANOMALY ' : 'good ') + f.label + ' · score ' + fixed(f.score) + ' (threshold ' + fixed(f.threshold, 2) + ')';
    decision.className = 'decision ' + (f.anomaly ? 'bad' : 'ok');
    decision.dataset.label = f.label;
    decision.dataset.origin = f.origin;
    $('#neighbours').replaceChildren(...f.neighbours.map(thumb));
  });
  source.addEventListener('status', (e) => {
    const s = JSON.parse(e.data);
    if (last && s.at > last.at) $('#fps').textContent = fixed(((s.frames - last.frames) * 1000) / (s.at - last.at), 1);
    last = s;
    $('#dropped').textContent = s.dropped;
    $('#model').textContent = s.model;
    $('#provider').textContent = s.provider;
    const health = $('#health');
    health.textContent = s.health.ok ? 'ok' : s.health.failing.join('; ');
    health.className = s.health.ok ? 'ok' : 'bad';
  });
}

function threshold() {
  const { curve, today, width } = data('threshold-data');
  const slider = $('#threshold');
  // Anomaly when score >= t: the same frames are flagged as at the lowest curve point at or above t.
  const at = (t) => curve.filter((p) => p.threshold >= t).sort((a, b) => a.threshold - b.threshold)[0];
  const show = () => {
    const t = Number(slider.value);
    $('#threshold-value').textContent = fixed(t, 2);
    $('#marker').setAttribute('x1', t * width);
    $('#marker').setAttribute('x2', t * width);
    const point = at(t);
    $('#expected-precision').textContent = point ? fixed(point.precision) : 'n/a (nothing flagged)';
    $('#expected-recall').textContent = point ? fixed(point.recall) : fixed(0);
    const bins = today.histogram.length;
    const flagged = today.histogram.slice(Math.min(bins, Math.floor(t * bins + 1e-9))).reduce((a, b) => a + b, 0);
    $('#flagged').textContent = flagged + ' of ' + today.frames;
  };
  slider.addEventListener('input', show);
  show();
}

function enroll() {
  const form = $('#enroll');
  if (!form) return;
  const base64 = (file) => new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).split(',')[1]);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const label = form.label.value.trim();
    const files = Array.from(form.images.files);
    let added = 0;
    for (const [i, file] of files.entries()) {
      say('enrolling ' + (i + 1) + ' of ' + files.length + '…');
      const reply = await call('enroll', { label, image: await base64(file) });
      if (!reply.ok) return;
      added += reply.result.added;
    }
    say('enrolled ' + added + ' of ' + files.length + ' as ' + label);
    setTimeout(() => location.reload(), 800);
  });
}

function models() {
  const staging = $('#staging');
  new EventSource('/ui/stream').addEventListener('status', (e) => {
    const s = JSON.parse(e.data).staging;
    staging.textContent = s ? 'staging ' + (s.key || 'a bundle') + ': ' + s.step + (s.total ? ' ' + s.done + '/' + s.total : '') : '';
  });
  const form = $('#upload');
  if (!form) return;
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const file = form.bundle.files[0];
    const bar = $('#upload-progress');
    const xhr = new XMLHttpRequest();
    xhr.open('POST', '/models');
    for (const [name, value] of Object.entries(headers)) xhr.setRequestHeader(name, value);
    xhr.setRequestHeader('content-type', 'application/gzip');
    bar.hidden = false;
    xhr.upload.onprogress = (p) => {
      if (p.lengthComputable) bar.value = p.loaded / p.total;
      say('uploading ' + Math.round((100 * p.loaded) / (p.total || 1)) + '%');
    };
    xhr.upload.onload = () => say('uploaded; the daemon verifies, re-embeds and gates it…');
    xhr.onload = () => {
      const reply = JSON.parse(xhr.responseText);
      if (!reply.ok) return say(reply.error.message, true);
      say(reply.result.key + ' is active: ' + reply.result.gate.reason);
      setTimeout(() => location.reload(), 1500);
    };
    xhr.onerror = () => say('the upload failed: is the daemon running?', true);
    xhr.send(file);
  });
}

if (page === 'live') live();
else if (page === 'threshold') threshold();
else if (page === 'references') enroll();
else if (page === 'models') models();
`;

export const styleSheet = `
:root { font-family: system-ui, sans-serif; color: #1d232a; background: #f5f6f7; }
body { margin: 0; }
header { display: flex; gap: 1.5rem; align-items: center; padding: 0.6rem 1rem; background: #1d3b53; color: #fff; flex-wrap: wrap; }
header nav { display: flex; gap: 0.8rem; flex: 1; }
header a { color: #cfe3f5; text-decoration: none; }
header a[aria-current] { color: #fff; font-weight: 600; border-bottom: 2px solid #ffb347; }
main { padding: 1rem; max-width: 1200px; }
h1 { margin: 0 0 0.5rem; font-size: 1.4rem; }
h2 { font-size: 1.05rem; margin: 1rem 0 0.4rem; }
button { font: inherit; padding: 0.3rem 0.7rem; border-radius: 4px; border: 1px solid #1d3b53; background: #fff; cursor: pointer; }
button:hover { background: #e8f0f7; }
.error, .bad { color: #b00020; }
.ok, .done { color: #11702f; }
.note { color: #5b6570; font-size: 0.85rem; margin: 0.1rem 0; }
nav.cameras { display: flex; gap: 0.8rem; flex-wrap: wrap; margin-bottom: 0.6rem; }
nav.cameras a[aria-current] { font-weight: 600; }
.live { display: grid; grid-template-columns: minmax(0, 2fr) minmax(0, 1fr); gap: 1rem; }
.frame-box { position: relative; display: inline-block; max-width: 100%; }
.frame-box img { display: block; max-width: 100%; min-width: 320px; image-rendering: pixelated; background: #000; }
.roi { position: absolute; border: 2px solid #ffb347; box-sizing: border-box; }
.decision { font-size: 1.3rem; font-weight: 600; }
.thumbs { display: flex; gap: 0.5rem; flex-wrap: wrap; }
.thumb { margin: 0; text-align: center; font-size: 0.8rem; }
.thumb img, .references img { width: 64px; height: 64px; object-fit: contain; background: #000; image-rendering: pixelated; }
.facts { display: grid; grid-template-columns: max-content auto; gap: 0.2rem 1rem; }
.facts dt { color: #5b6570; }
.facts dd { margin: 0; }
.filters, .enroll { display: flex; gap: 0.8rem; align-items: center; flex-wrap: wrap; margin: 0.5rem 0; }
.queue { list-style: none; padding: 0; }
.anomaly { display: flex; gap: 1rem; background: #fff; padding: 0.6rem; margin-bottom: 0.6rem; border-radius: 6px; }
.anomaly > a img { width: 128px; height: 128px; object-fit: contain; background: #000; image-rendering: pixelated; }
.anomaly p { margin: 0.2rem 0; }
.event-id { font-family: monospace; font-size: 0.75rem; color: #5b6570; }
.actions { display: flex; gap: 0.4rem; flex-wrap: wrap; margin-top: 0.4rem; }
.references { list-style: none; padding: 0; display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: 0.6rem; }
.references li { background: #fff; padding: 0.4rem; border-radius: 6px; font-size: 0.85rem; }
.references p { margin: 0.1rem 0; }
.origin { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.curve { width: 100%; max-width: 520px; background: #fff; }
.curve .plot { fill: none; stroke: #c7ccd1; }
.curve polyline { fill: none; stroke-width: 2; }
.curve text { font-size: 11px; fill: #5b6570; }
polyline.precision { stroke: #1d6fb8; }
polyline.recall { stroke: #d9661f; }
.legend .precision { color: #1d6fb8; }
.legend .recall { color: #d9661f; }
.marker { stroke: #1d232a; stroke-dasharray: 4 3; }
.slider input { width: 320px; vertical-align: middle; }
table { border-collapse: collapse; background: #fff; font-size: 0.9rem; }
td, th { padding: 0.3rem 0.6rem; border-bottom: 1px solid #e1e4e8; text-align: left; vertical-align: top; }
tr.active { background: #eef7ee; }
td.gate { max-width: 420px; font-size: 0.8rem; }
.config { background: #fff; padding: 0.6rem; font-size: 0.8rem; overflow: auto; max-height: 420px; }
.login { max-width: 320px; margin: 4rem auto; }
.login form { display: grid; gap: 0.6rem; }
.login input { width: 100%; box-sizing: border-box; padding: 0.3rem; }
@media (max-width: 800px) { .live { grid-template-columns: 1fr; } }
`;
