// The consent page: signs the grant with the switches' consent matrix and
// a bindAuthz for this data bank, then goes back to the client.

import { ready, postJSON, say, keyPair, anychain, alias, origin } from './bank.js';

const form = document.getElementById('consent-form');
const button = document.getElementById('agree');

async function agree(event) {
  event.preventDefault();
  button.disabled = true;
  try {
    await ready();
    const contract = anychain.decode(document.getElementById('contract-data').textContent);
    // Never sign what is not in clear (a hashed scope or switch).
    alias.checkContractClear(contract);
    const kp = await keyPair();
    const on = new Set([...document.querySelectorAll('input.consent:checked')].map((el) => `${el.dataset.group}/${el.dataset.index}`));
    const consent = alias.matrixFor(contract, 'consent', (_scope, g, s) => on.has(`${g}/${s}`));
    const legitimate = alias.matrixFor(contract, 'legitimate', true);
    say('Signing your grant…');
    const grant = alias.signGrant(kp, contract, { consent, legitimate });
    const bind = alias.signBindAuthz(kp, origin());
    const rid = document.getElementById('request-id').value;
    const answer = await postJSON(`/request/${encodeURIComponent(rid)}/agree`, {
      grant: anychain.toToken(grant),
      bind: anychain.toToken(bind),
    });
    say('Done: taking you back to the client…');
    window.location.assign(answer.redirect);
  } catch (e) {
    say(e.message, true);
    button.disabled = false;
  }
}

form.addEventListener('submit', agree);
