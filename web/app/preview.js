// The consent page's preview: what this client would receive from the
// user's exports, computed by the data bank with the real extraction (a dry
// run). "Show" starts one (POST /web/preview), then the page polls
// GET /web/preview until it is ready. Everything from the server is set
// with textContent: sample records are the client's data as text, never
// markup.

import { getJSON, postJSON, human } from './bank.js';
import { previewWords, previewStateWords } from './format.js';

const box = document.getElementById('preview');
const rid = document.getElementById('request-id').value;
const button = document.getElementById('preview-start');
const status = document.getElementById('preview-status');
const list = document.getElementById('preview-scopes');
const path = `/web/preview?request=${encodeURIComponent(rid)}`;
const POLL_MS = 1500;
let timer = null;

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function render(answer) {
  status.textContent = previewStateWords(answer);
  box.setAttribute('aria-busy', answer.state === 'pending' ? 'true' : 'false');
  list.replaceChildren();
  const p = answer.preview;
  const words = answer.words || {};
  const labels = words.labels || {};
  const providers = words.providers || {};
  if (answer.state === 'failed' && p) list.append(el('li', p.reason, 'preview-failed'));
  if (answer.state !== 'ready' || !p) return;
  for (const s of p.scopes || []) {
    const li = el('li', undefined, 'preview-scope');
    li.append(el('span', labels[s.scope] || 'Data of this request'), document.createTextNode(': '), el('strong', previewWords(s)));
    const raw = el('details', undefined, 'preview-raw');
    raw.append(el('summary', 'Details'), el('code', s.scope));
    li.append(raw);
    if ((s.first_files || []).length) {
      li.append(el('p', 'First files:', 'help'));
      const files = el('ul', undefined, 'preview-files');
      for (const f of s.first_files) files.append(el('li', f));
      li.append(files);
    }
    if ((s.samples || []).length) {
      li.append(el('p', 'Example records, as the client would receive them:', 'help'));
      for (const r of s.samples) li.append(el('pre', r, 'preview-sample'));
    }
    for (const n of s.notes || []) li.append(el('p', n, 'caveat'));
    list.append(li);
  }
  for (const m of p.missing || []) {
    list.append(el('li', `${labels[m] || providers[m] || 'Data of this request'}: nothing, the data bank holds no export of this provider for you`, 'preview-missing'));
  }
}

async function poll() {
  timer = null;
  try {
    const answer = await getJSON(path);
    render(answer);
    if (answer.state === 'pending') timer = setTimeout(poll, POLL_MS);
    else button.disabled = false;
  } catch (e) {
    button.disabled = false;
    status.textContent = human(e, 'Could not read the preview').text;
  }
}

async function start() {
  button.disabled = true;
  status.textContent = 'Asking the data bank…';
  try {
    render(await postJSON(path, {}));
    if (!timer) timer = setTimeout(poll, POLL_MS);
  } catch (e) {
    button.disabled = false;
    status.textContent = human(e, 'Could not start the preview').text;
  }
}

if (box && button) {
  button.addEventListener('click', start);
  button.disabled = false;
  // A preview asked for earlier (this hour) shows at once.
  poll();
}
