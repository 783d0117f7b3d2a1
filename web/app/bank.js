// Shared code of the data bank's pages: libsodium, the CSRF token, JSON
// requests, and the user's key for this tab. The key (its 32-byte seed) is
// derived from the password in this browser and kept in sessionStorage, so
// it lives only as long as the tab; it is never sent to the data bank.

import sodium from 'libsodium-wrappers-sumo';
import * as anychain from '../src/anychain.js';
import * as alias from '../src/alias.js';

export { anychain, alias };

const KEY_ITEM = 'alias-bank.key';

/** Loads libsodium (once). */
export async function ready() {
  await anychain.init(sodium);
}

/** The page's CSRF token. */
export function csrf() {
  return document.querySelector('meta[name="csrf-token"]').content;
}

/** The data bank's origin, as grants and logins name it. */
export function origin() {
  return document.querySelector('meta[name="bank-origin"]').content;
}

/** Shows a message in the live region (and as an error when `error`). */
export function say(text, error = false) {
  const el = document.getElementById('status');
  el.textContent = text;
  el.classList.toggle('error', error);
}

/**
 * Shows an error where it belongs: in the form's alert (`.form-error`,
 * role="alert"), tied to `field` (aria-invalid, aria-describedby) which
 * gets the focus. Technical detail, if any, is folded away.
 */
export function showError(form, text, field = null, detail = '') {
  clearErrors(form);
  const box = form.querySelector('.form-error');
  box.textContent = text;
  if (detail) {
    const more = document.createElement('details');
    const summary = document.createElement('summary');
    summary.textContent = 'Technical detail';
    const pre = document.createElement('code');
    pre.textContent = detail;
    more.append(summary, pre);
    box.append(' ', more);
  }
  box.hidden = false;
  if (field) {
    field.setAttribute('aria-invalid', 'true');
    field.setAttribute('aria-describedby', [field.dataset.describedby || '', box.id].join(' ').trim());
    field.focus();
  } else {
    box.setAttribute('tabindex', '-1');
    box.focus();
  }
}

/** Removes the errors shown by `showError`. */
export function clearErrors(form) {
  const box = form.querySelector('.form-error');
  if (box) {
    box.hidden = true;
    box.textContent = '';
  }
  for (const el of form.querySelectorAll('[aria-invalid]')) {
    el.removeAttribute('aria-invalid');
    if (el.dataset.describedby !== undefined) el.setAttribute('aria-describedby', el.dataset.describedby);
    else el.removeAttribute('aria-describedby');
  }
}

/** A failure in words for people, and its technical detail. */
export function human(e, what) {
  const detail = e && e.message ? `${e.code ? `${e.code}: ` : ''}${e.message}` : String(e);
  if (e instanceof TypeError && /fetch|network/i.test(e.message)) {
    return { text: `${what}: the data bank cannot be reached. Check your connection and try again.`, detail };
  }
  if (e.status === 429) return { text: `${what}: too many attempts. Wait a few minutes, then try again.`, detail };
  if (e.status >= 500) return { text: `${what}: the data bank is having trouble. Try again in a moment.`, detail };
  if (e.status === 401 || e.status === 403) return { text: `${what}: your session ended. Reload the page and log in again.`, detail };
  if (e.human) return { text: e.message, detail: '' };
  return { text: `${what}: the data bank refused it.`, detail };
}

/**
 * Enables the controls the page's script drives (given by id), once
 * libsodium is ready: until then they stay disabled, so nothing can be
 * submitted without the script.
 */
export async function enableWhenReady(...ids) {
  await ready();
  for (const id of ids) {
    const el = document.getElementById(id);
    if (el) el.disabled = false;
  }
  const wait = document.getElementById('script-wait');
  if (wait) wait.hidden = true;
  document.documentElement.dataset.ready = 'true';
}

/** An error whose message is already worded for people. */
export function plainError(text) {
  const err = new Error(text);
  err.human = true;
  return err;
}

/** POSTs JSON with the CSRF header; resolves to the JSON answer, throws its reason. */
export async function postJSON(url, body) {
  const resp = await fetch(url, {
    method: 'POST',
    credentials: 'same-origin',
    headers: { 'content-type': 'application/json', 'x-csrf-token': csrf() },
    body: JSON.stringify(body),
  });
  return answer(resp);
}

/** GETs JSON. */
export async function getJSON(url) {
  return answer(await fetch(url, { credentials: 'same-origin' }));
}

async function answer(resp) {
  let data = {};
  try {
    data = await resp.json();
  } catch {
    data = { reason: `${resp.status} ${resp.statusText}` };
  }
  if (!resp.ok) {
    const err = new Error(data.reason || `request failed (${resp.status})`);
    err.code = data.code;
    err.status = resp.status;
    throw err;
  }
  return data;
}

/** Keeps the unlocked key for this tab. */
export function storeKey(signSeed, username) {
  const pk = anychain.keyPairFromSeed(signSeed).publicKey;
  sessionStorage.setItem(KEY_ITEM, JSON.stringify({ seed: anychain.b64uEncode(signSeed), pk: anychain.b64uEncode(pk), username }));
}

/** Forgets the key of this tab. */
export function forgetKey() {
  sessionStorage.removeItem(KEY_ITEM);
}

/** The key pair of this tab, when unlocked for `publicKey` (if given). */
export function storedKeyPair(publicKey) {
  const raw = sessionStorage.getItem(KEY_ITEM);
  if (!raw) return null;
  try {
    const { seed, pk } = JSON.parse(raw);
    if (publicKey && pk !== publicKey) return null;
    return anychain.keyPairFromSeed(anychain.b64uDecode(seed));
  } catch {
    return null;
  }
}

/**
 * The user's key pair: from this tab, or unlocked with the password typed
 * in `#unlock-password` (the account record comes from /web/me).
 */
export async function keyPair() {
  const me = await getJSON('/web/me');
  const stored = storedKeyPair(me.record.publicKey);
  if (stored) return stored;
  const box = document.getElementById('unlock');
  const input = document.getElementById('unlock-password');
  if (box.hidden || !input.value) {
    box.hidden = false;
    const err = plainError('Type your password to unlock your key in this tab, then try again.');
    err.field = input;
    throw err;
  }
  say('Unlocking your key…');
  let unlocked;
  try {
    unlocked = await alias.unlockAccount(input.value, me.record);
  } catch {
    const err = plainError('This password does not unlock your key. Check it and try again.');
    err.field = input;
    throw err;
  }
  const { identity, keyPair: kp } = unlocked;
  input.value = '';
  storeKey(identity.signSeed, me.username);
  box.hidden = true;
  return kp;
}

// Logging out forgets the key of this tab.
const logout = document.getElementById('logout-form');
if (logout) logout.addEventListener('submit', forgetKey);
