// Login and signup. The password stays here: argon2id gives the keys, the
// data bank gets the public verifier and a signature of its challenge.

import { ready, postJSON, getJSON, say, storeKey, anychain, alias, origin } from './bank.js';

const next = () => document.getElementById('next').value || '/dashboard';
const field = (id) => document.getElementById(id);

function busy(button, on) {
  button.disabled = on;
  button.setAttribute('aria-busy', on ? 'true' : 'false');
}

async function login(event) {
  event.preventDefault();
  const button = field('login-button');
  const username = field('username').value.trim().toLowerCase();
  const password = field('password').value;
  if (!username || !password) return say('Type your username and password.', true);
  busy(button, true);
  try {
    await ready();
    say('Deriving your key (this takes a few seconds)…');
    const params = await getJSON(`/web/account/params?username=${encodeURIComponent(username)}`);
    const keys = await alias.deriveKeys(password, params.salt, params.pwhash);
    const verifier = anychain.b64uEncode(keys.verifier);
    const begun = await postJSON('/web/login/begin', { username, verifier });
    const identity = alias.openIdentity(begun.box, keys.boxKeyPair);
    const keyPair = anychain.keyPairFromSeed(identity.signSeed);
    if (anychain.b64uEncode(keyPair.publicKey) !== begun.publicKey) throw new Error('your identity box does not hold your account key');
    const answer = alias.signLogin(keyPair, { challenge: begun.challenge, origin: origin() });
    await postJSON('/web/login/finish', { username, verifier, login: anychain.toToken(answer) });
    storeKey(identity.signSeed, username);
    say('Logged in.');
    window.location.assign(next());
  } catch (e) {
    say(e.status === 401 ? 'Wrong username or password.' : `Could not log in: ${e.message}`, true);
    busy(button, false);
  }
}

async function signup(event) {
  event.preventDefault();
  const button = field('signup-button');
  const username = field('username').value.trim().toLowerCase();
  const password = field('password').value;
  if (!/^[a-z0-9][a-z0-9._-]{0,31}$/.test(username)) return say('Choose a username of 1–32 of a–z, 0–9, “.”, “_”, “-”.', true);
  if (password.length < 10) return say('Choose a password of at least 10 characters.', true);
  if (password !== field('password2').value) return say('The two passwords differ.', true);
  busy(button, true);
  try {
    await ready();
    const begun = await postJSON('/web/signup/begin', { username });
    say('Deriving your key (this takes a few seconds)…');
    const { record, identity, keyPair } = await alias.createAccount(username, password, { origin: origin() });
    const answer = alias.signLogin(keyPair, { challenge: begun.challenge, origin: origin() });
    await postJSON('/web/signup', { record, bind: anychain.toToken(identity.bind), login: anychain.toToken(answer) });
    storeKey(identity.signSeed, username);
    say('Account created.');
    window.location.assign(next());
  } catch (e) {
    say(`Could not create the account: ${e.message}`, true);
    busy(button, false);
  }
}

const loginForm = field('login-form');
if (loginForm) loginForm.addEventListener('submit', login);
const signupForm = field('signup-form');
if (signupForm) {
  signupForm.addEventListener('submit', signup);
  field('username').addEventListener('input', () => {
    field('alias-preview').textContent = field('username').value.trim().toLowerCase() || 'name';
  });
}
