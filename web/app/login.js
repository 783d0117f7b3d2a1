// Login and signup. The password stays here: argon2id gives the keys, the
// data bank gets the public verifier and a signature of its challenge.
// The forms have no named fields and post to routes that refuse; their
// buttons stay disabled until this script is ready, so pressing Enter early
// sends nothing.

import { ready, postJSON, getJSON, say, storeKey, anychain, alias, origin, showError, clearErrors, human, enableWhenReady } from './bank.js';

const next = () => document.getElementById('next').value || '/dashboard';
const field = (id) => document.getElementById(id);

function busy(button, on) {
  button.disabled = on;
  button.setAttribute('aria-busy', on ? 'true' : 'false');
}

async function login(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const button = field('login-button');
  const username = field('username').value.trim().toLowerCase();
  const password = field('password').value;
  clearErrors(form);
  if (!username) return showError(form, 'Type your username.', field('username'));
  if (!password) return showError(form, 'Type your password.', field('password'));
  busy(button, true);
  try {
    await ready();
    say('Deriving your key (this takes a few seconds)…');
    const params = await getJSON(`/web/account/params?username=${encodeURIComponent(username)}`);
    const keys = await alias.deriveKeys(password, params.salt, params.pwhash);
    const verifier = anychain.b64uEncode(keys.verifier);
    let begun;
    try {
      begun = await postJSON('/web/login/begin', { username, verifier });
    } catch (e) {
      if (e.status === 401) {
        say('');
        busy(button, false);
        field('password').value = '';
        return showError(form, 'Wrong username or password.', field('password'));
      }
      throw e;
    }
    let identity;
    try {
      identity = alias.openIdentity(begun.box, keys.boxKeyPair);
    } catch (e) {
      throw Object.assign(new Error(`identity box: ${e.message}`), { human: false, status: 0 });
    }
    const keyPair = anychain.keyPairFromSeed(identity.signSeed);
    if (anychain.b64uEncode(keyPair.publicKey) !== begun.publicKey) throw new Error('the identity box does not hold the account key');
    const answer = alias.signLogin(keyPair, { challenge: begun.challenge, origin: origin() });
    await postJSON('/web/login/finish', { username, verifier, login: anychain.toToken(answer) });
    storeKey(identity.signSeed, username);
    say('Logged in.');
    window.location.assign(next());
  } catch (e) {
    say('');
    const { text, detail } = human(e, 'Could not log in');
    showError(form, text, null, detail);
    busy(button, false);
  }
}

async function signup(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const button = field('signup-button');
  const username = field('username').value.trim().toLowerCase();
  const password = field('password').value;
  clearErrors(form);
  if (!/^[a-z0-9][a-z0-9._-]{0,31}$/.test(username)) return showError(form, 'Choose a username of 1 to 32 letters a–z, digits, “.”, “_” or “-”, starting with a letter or digit.', field('username'));
  if (password.length < 10) return showError(form, 'Choose a password of at least 10 characters.', field('password'));
  if (password !== field('password2').value) return showError(form, 'The two passwords differ: type the same password twice.', field('password2'));
  busy(button, true);
  try {
    await ready();
    let begun;
    try {
      begun = await postJSON('/web/signup/begin', { username });
    } catch (e) {
      if (e.code === 'username_taken' || e.status === 409) {
        busy(button, false);
        return showError(form, `The username “${username}” is taken. Choose another.`, field('username'));
      }
      throw e;
    }
    say('Deriving your key (this takes a few seconds)…');
    const { record, identity, keyPair } = await alias.createAccount(username, password, { origin: origin() });
    const answer = alias.signLogin(keyPair, { challenge: begun.challenge, origin: origin() });
    await postJSON('/web/signup', { record, bind: anychain.toToken(identity.bind), login: anychain.toToken(answer) });
    storeKey(identity.signSeed, username);
    say('Account created.');
    window.location.assign(next());
  } catch (e) {
    say('');
    busy(button, false);
    if (e.code === 'username_taken') return showError(form, `The username “${username}” is taken. Choose another.`, field('username'));
    const { text, detail } = human(e, 'Could not create the account');
    showError(form, text, null, detail);
    busy(button, false);
  }
}

const loginForm = field('login-form');
if (loginForm) {
  loginForm.addEventListener('submit', login);
  enableWhenReady('login-button');
}
const signupForm = field('signup-form');
if (signupForm) {
  signupForm.addEventListener('submit', signup);
  field('username').addEventListener('input', () => {
    field('alias-preview').textContent = field('username').value.trim().toLowerCase() || 'name';
  });
  enableWhenReady('signup-button');
}
