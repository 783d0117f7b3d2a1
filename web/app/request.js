// The consent page: signs the grant with the switches' consent matrix (and
// the objections to legitimate-interest scopes) and a bindAuthz for this
// data bank, then goes back to the client. Deny withdraws an earlier
// agreement with a revocation signed here. Agree stays disabled until this
// script is ready; Deny works without it when there is nothing to withdraw.

import { ready, postJSON, say, keyPair, anychain, alias, origin, showError, clearErrors, human, enableWhenReady } from './bank.js';

const form = document.getElementById('consent-form');
const agreeButton = document.getElementById('agree');
const denyButton = document.getElementById('deny');
const rid = document.getElementById('request-id').value;

function contract() {
  const c = anychain.decode(document.getElementById('contract-data').textContent);
  // Never sign what is not in clear (a hashed scope or switch).
  alias.checkContractClear(c);
  return c;
}

function busy(on) {
  agreeButton.disabled = on;
  denyButton.disabled = on;
  form.setAttribute('aria-busy', on ? 'true' : 'false');
}

function failed(e, what) {
  say('');
  busy(false);
  if (e.human) return showError(form, e.message, e.field || null);
  const { text, detail } = human(e, what);
  return showError(form, text, null, detail);
}

async function agree() {
  busy(true);
  try {
    await ready();
    const c = contract();
    const kp = await keyPair();
    const checked = (cls) => new Set([...form.querySelectorAll(`input.${cls}:checked`)].map((el) => `${el.dataset.group}/${el.dataset.index}`));
    const on = checked('consent');
    const objected = checked('object');
    const consent = alias.matrixFor(c, 'consent', (_scope, g, s) => on.has(`${g}/${s}`));
    const legitimate = alias.matrixFor(c, 'legitimate', (_scope, g, s) => !objected.has(`${g}/${s}`));
    say('Signing your answer…');
    const grant = alias.signGrant(kp, c, { consent, legitimate });
    const bind = alias.signBindAuthz(kp, origin());
    const answer = await postJSON(`/request/${encodeURIComponent(rid)}/agree`, {
      grant: anychain.toToken(grant),
      bind: anychain.toToken(bind),
    });
    say('Done: taking you back to the client…');
    window.location.assign(answer.redirect);
  } catch (e) {
    failed(e, 'Could not send your agreement');
  }
}

async function deny() {
  busy(true);
  try {
    let revocation;
    if (form.dataset.earlierGrant === 'true') {
      await ready();
      const c = contract();
      const kp = await keyPair();
      say('Withdrawing your earlier agreement…');
      revocation = anychain.toToken(alias.signRevokedGrant(kp, c, { date: Date.now() }));
    }
    const answer = await postJSON(`/request/${encodeURIComponent(rid)}/deny`, revocation ? { revocation } : {});
    say('Denied: taking you back to the client…');
    window.location.assign(answer.redirect);
  } catch (e) {
    failed(e, 'Could not send your answer');
  }
}

form.addEventListener('submit', (event) => {
  event.preventDefault();
  clearErrors(form);
  if (event.submitter && event.submitter.id === 'deny') deny();
  else agree();
});
enableWhenReady('agree');
