// The dashboard: export upload (signed request, with progress; the file
// keeps its own name), deletion, withdrawal (a newer revoked grant signed
// here), retry of a failed transfer, the re-export switches, and the
// transfers' progress in words, sizes and local times, refreshed every
// few seconds. Confirmations are an in-page dialog, never confirm().

import { ready, postJSON, getJSON, say, keyPair, anychain, alias, origin, showError, clearErrors, human, enableWhenReady } from './bank.js';
import { humanBytes, localTime, stateWords, progressWords, retryWords, dumpPath } from './format.js';

const uploadForm = document.getElementById('upload-form');

function put(url, file, authorization, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('PUT', url);
    xhr.setRequestHeader('Authorization', authorization);
    xhr.setRequestHeader('Content-Type', 'application/octet-stream');
    xhr.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded, e.total);
    xhr.onload = () => {
      let data = {};
      try {
        data = JSON.parse(xhr.responseText);
      } catch {
        /* not JSON */
      }
      if (xhr.status >= 200 && xhr.status < 300) resolve(data);
      else reject(Object.assign(new Error(data.reason || `upload failed (${xhr.status})`), { status: xhr.status, code: data.code }));
    };
    xhr.onerror = () => reject(new TypeError('network error'));
    xhr.send(file);
  });
}

/** Asks with the in-page dialog; resolves to true for the confirming button. */
function ask(text, okLabel) {
  const dialog = document.getElementById('confirm');
  document.getElementById('confirm-text').textContent = text;
  document.getElementById('confirm-ok').textContent = okLabel;
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok'), { once: true });
    dialog.returnValue = '';
    dialog.showModal();
  });
}

async function upload(event) {
  event.preventDefault();
  clearErrors(uploadForm);
  const input = document.getElementById('dump-file');
  const file = input.files[0];
  const provider = document.getElementById('provider').value;
  const progress = document.getElementById('upload-progress');
  const button = document.getElementById('upload-button');
  if (!file) return showError(uploadForm, 'Choose the export file to upload.', input);
  let path;
  try {
    path = dumpPath(provider, file.name);
  } catch (e) {
    return showError(uploadForm, e.message, input);
  }
  const max = Number(document.getElementById('max-dump-bytes').value);
  if (max && file.size > max) return showError(uploadForm, `This file is ${humanBytes(file.size)}; exports of up to ${humanBytes(max)} are accepted here.`, input);
  button.disabled = true;
  try {
    await ready();
    const kp = await keyPair();
    const signed = alias.signRequest(kp, { method: 'PUT', path, origin: origin(), size: file.size });
    progress.hidden = false;
    progress.value = 0;
    const result = await put(path, file, alias.authorizationHeader(signed), (done, total) => {
      progress.value = Math.floor((done * 100) / total);
      say(`Uploading ${file.name}: ${humanBytes(done)} of ${humanBytes(total)}`);
    });
    progress.value = 100;
    const again = (result.reexports || []).length;
    say(`Uploaded ${file.name}.${again ? ` ${again} fresh transfer${again === 1 ? '' : 's'} queued.` : ''}`);
    setTimeout(() => window.location.reload(), 600);
  } catch (e) {
    say('');
    button.disabled = false;
    if (e.human) return showError(uploadForm, e.message, e.field || null);
    if (e.code === 'quota_exceeded') return showError(uploadForm, 'Your exports take all the room you have here: delete an older one first.', input, e.message);
    if (e.code === 'name_conflict') return showError(uploadForm, 'Another of your exports is stored under a very similar name: rename the file and try again.', input);
    const { text, detail } = human(e, `Could not upload ${file.name}`);
    return showError(uploadForm, text, null, detail);
  }
}

async function deleteDump(button) {
  if (!(await ask(`Delete the export “${button.dataset.name}”? Transfers being prepared from it stop.`, 'Delete'))) return;
  try {
    await ready();
    const kp = await keyPair();
    const path = dumpPath(button.dataset.provider, button.dataset.name);
    const signed = alias.signRequest(kp, { method: 'DELETE', path, origin: origin() });
    const resp = await fetch(path, { method: 'DELETE', headers: { Authorization: alias.authorizationHeader(signed) } });
    if (!resp.ok) throw Object.assign(new Error((await resp.json()).reason), { status: resp.status });
    say(`Deleted ${button.dataset.name}.`);
    window.location.reload();
  } catch (e) {
    say(e.human ? e.message : human(e, 'Could not delete it').text, true);
  }
}

function grantOf(contract) {
  const el = [...document.querySelectorAll('script.grant-data')].find((s) => s.dataset.contract === contract);
  return anychain.decode(el.textContent);
}

async function revoke(button) {
  const name = button.dataset.name;
  if (!(await ask(`Withdraw your agreement with ${name}? Nothing more is sent, and ${name} is told to delete what it received.`, 'Withdraw'))) return;
  button.disabled = true;
  try {
    await ready();
    const kp = await keyPair();
    const grant = grantOf(button.dataset.contract);
    alias.checkGrantClear(grant);
    const date = Math.max(Date.now(), grant.date + 1);
    const revoked = alias.signRevokedGrant(kp, grant.body.contract, { date });
    await postJSON('/web/grants', { grant: anychain.toToken(revoked) });
    say(`Withdrawn from ${name}.`);
    window.location.reload();
  } catch (e) {
    say(e.human ? e.message : human(e, 'Could not withdraw').text, true);
    button.disabled = false;
  }
}

async function retry(button) {
  button.disabled = true;
  try {
    await postJSON('/web/transfers/retry', { contract: button.dataset.contract });
    say('Trying again: a new transfer is queued.');
    button.hidden = true;
    refresh();
  } catch (e) {
    say(human(e, 'Could not retry').text, true);
  } finally {
    button.disabled = false;
  }
}

async function reexport(input) {
  try {
    await postJSON('/web/reexport', { contract: input.dataset.contract, enabled: input.checked });
    say(input.checked ? 'A newer export will start a fresh transfer.' : 'Re-export is off.');
  } catch (e) {
    input.checked = !input.checked;
    say(human(e, 'Could not change the setting').text, true);
  }
}

/** Local times for every <time datetime="ms">. */
function localize(root = document) {
  for (const el of root.querySelectorAll('time[datetime]')) {
    const ms = Number(el.getAttribute('datetime'));
    if (!ms) continue;
    el.textContent = localTime(ms);
    el.setAttribute('datetime', new Date(ms).toISOString());
    el.dataset.ms = String(ms);
  }
}

/** How long a sending transfer may stay without progress before the page says the client is not answering. */
const STALLED_MS = 30000;

function showTransfer(article, t) {
  const stateEl = article.querySelector('.transfer-state');
  const words = stateWords(t.state, t.revoked);
  const stalled = t.state === 'pushing' && Date.now() - t.updated_ms > STALLED_MS;
  if (stateEl.textContent !== words) stateEl.textContent = words;
  stateEl.className = `transfer-state state state-${stalled ? 'stalled' : t.state}`;
  stateEl.dataset.state = t.state;
  article.querySelector('.transfer-bytes').textContent = progressWords(t);
  const whenEl = article.querySelector('.transfer-when');
  whenEl.textContent = `since ${localTime(t.updated_ms)}`;
  const bar = article.querySelector('.transfer-progress');
  bar.hidden = !t.bytes_total;
  bar.max = t.bytes_total || 1;
  bar.value = t.bytes_done;
  let detail = t.detail;
  const retrying = retryWords(t);
  if (stalled && !retrying) detail = `The service has not accepted anything since ${localTime(t.updated_ms)}. The data bank keeps trying on its own.`;
  const retryEl = article.querySelector('.transfer-retry');
  if (retryEl) {
    retryEl.hidden = !retrying;
    if (retryEl.textContent !== retrying) retryEl.textContent = retrying;
  }
  article.querySelector('.transfer-detail').textContent = detail;
  const technical = article.querySelector('.transfer-technical');
  if (technical) {
    technical.hidden = !t.technical;
    technical.querySelector('code').textContent = t.technical;
  }
  const retryButton = article.querySelector('button.retry');
  if (retryButton) retryButton.hidden = !t.retry;
}

async function refresh() {
  try {
    const { clients } = await getJSON('/web/transfers');
    for (const c of clients) {
      const article = document.querySelector(`article[data-contract="${CSS.escape(c.contract)}"]`);
      if (!article || !c.transfer) continue;
      showTransfer(article, { ...c.transfer, revoked: c.revoked });
    }
  } catch {
    /* try again later */
  }
}

async function changePassword(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const field = (id) => document.getElementById(id);
  const button = field('password-button');
  clearErrors(form);
  const current = field('current-password').value;
  const next = field('new-password').value;
  if (!current) return showError(form, 'Type your current password.', field('current-password'));
  if (next.length < 10) return showError(form, 'Choose a new password of at least 10 characters.', field('new-password'));
  if (next !== field('new-password2').value) return showError(form, 'The two new passwords differ: type the same password twice.', field('new-password2'));
  button.disabled = true;
  try {
    await ready();
    say('Deriving your keys (this takes a few seconds)…');
    const me = await getJSON('/web/me');
    let unlocked;
    try {
      unlocked = await alias.unlockAccount(current, me.record);
    } catch {
      say('');
      button.disabled = false;
      return showError(form, 'This is not your current password.', field('current-password'));
    }
    const verifier = anychain.b64uEncode(unlocked.keys.verifier);
    const begun = await postJSON('/web/account/password/begin', { verifier });
    const record = await alias.changePassword(unlocked.identity, next, { params: me.record.pwhash });
    const answer = alias.signLogin(unlocked.keyPair, { challenge: begun.challenge, origin: origin() });
    await postJSON('/web/account/password', { verifier, record, login: anychain.toToken(answer) });
    for (const id of ['current-password', 'new-password', 'new-password2']) field(id).value = '';
    button.disabled = false;
    say('Your password is changed. Use the new one from now on.');
  } catch (e) {
    say('');
    button.disabled = false;
    const { text, detail } = human(e, 'Could not change the password');
    showError(form, text, null, detail);
  }
}

/** Deletes the account: the password confirms it (and unlocks the key that
 * signs the withdrawal of every agreement shown here), after the in-page
 * dialog. */
async function deleteAccount(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const field = (id) => document.getElementById(id);
  const button = field('delete-button');
  const input = field('delete-password');
  clearErrors(form);
  const password = input.value;
  if (!password) return showError(form, 'Type your password to confirm.', input);
  const agreements = [...document.querySelectorAll('script.grant-data')];
  const told = agreements.length ? ` The ${agreements.length === 1 ? 'service' : `${agreements.length} services`} you agreed to ${agreements.length === 1 ? 'is' : 'are'} told to delete what ${agreements.length === 1 ? 'it' : 'they'} received.` : '';
  if (!(await ask(`Delete your account and everything it holds here?${told} This cannot be undone.`, 'Delete my account'))) return;
  button.disabled = true;
  try {
    await ready();
    say('Deriving your keys (this takes a few seconds)…');
    const me = await getJSON('/web/me');
    let unlocked;
    try {
      unlocked = await alias.unlockAccount(password, me.record);
    } catch {
      say('');
      button.disabled = false;
      return showError(form, 'This is not your password.', input);
    }
    const revocations = agreements.map((el) => {
      const grant = anychain.decode(el.textContent);
      alias.checkGrantClear(grant);
      const date = Math.max(Date.now(), grant.date + 1);
      return anychain.toToken(alias.signRevokedGrant(unlocked.keyPair, grant.body.contract, { date }));
    });
    const verifier = anychain.b64uEncode(unlocked.keys.verifier);
    const done = await postJSON('/web/account/delete', { verifier, revocations });
    input.value = '';
    say('Your account is deleted.');
    window.location.assign(done.redirect || '/login?deleted=1');
  } catch (e) {
    say('');
    button.disabled = false;
    if (e.code === 'revocation_needed') return showError(form, 'You agreed to a service since this page was loaded: reload the page, then delete again.', null);
    const { text, detail } = human(e, 'Could not delete your account');
    showError(form, text, null, detail);
  }
}

uploadForm.addEventListener('submit', upload);
document.getElementById('delete-form').addEventListener('submit', deleteAccount);
document.getElementById('password-form').addEventListener('submit', changePassword);
document.getElementById('unlock-button').addEventListener('click', async () => {
  try {
    await ready();
    await keyPair();
    say('Your key is unlocked in this tab.');
  } catch (e) {
    say(e.message, true);
  }
});
document.addEventListener('click', (event) => {
  const target = event.target.closest('button');
  if (!target) return;
  if (target.classList.contains('delete-dump')) deleteDump(target);
  if (target.classList.contains('revoke')) revoke(target);
  if (target.classList.contains('retry')) retry(target);
});
document.querySelectorAll('input.reexport').forEach((input) => input.addEventListener('change', () => reexport(input)));
localize();
enableWhenReady('upload-button', 'unlock-button', 'password-button', 'delete-button').then(() => {
  for (const b of document.querySelectorAll('button.delete-dump, button.revoke, button.retry')) b.disabled = false;
});
refresh();
setInterval(refresh, 2000);
