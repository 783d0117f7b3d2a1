// The user's side in a real browser (headless Chromium driven by
// playwright-core): sign up, upload a small dump, approve an authorization
// request of a test client, see the transfer finish on the dashboard,
// deny a second request, revoke. Screenshots of each page go to
// target/browser-artifacts/. Meanwhile every request the browser sends,
// and every value the data bank keeps in Redis, is searched for the
// password and the private keys: none may ever reach the server.
//
// Run by scripts/browser-test (which builds the binaries and installs
// Chromium and playwright-core). Needs Redis on 127.0.0.1:6379.
//
// Environment: ALIAS_BANK_BIN, ALIAS_SINK_BIN, DUMPGEN_BIN (binaries),
// CHROMIUM (default /usr/bin/chromium), ARTIFACTS (screenshot directory),
// REDIS_PORT (default 6379).

import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import sodium from 'libsodium-wrappers-sumo';
import { chromium } from 'playwright-core';
import * as anychain from '../../src/anychain.js';
import * as alias from '../../src/alias.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../../..');
const artifacts = process.env.ARTIFACTS || path.join(root, 'target/browser-artifacts');
const bin = (name, env) => process.env[env] || path.join(root, 'target/debug', name);
const started = Date.now();
const children = [];
let passed = 0;
let failed = 0;

function log(...args) {
  console.log(`[${((Date.now() - started) / 1000).toFixed(1)}s]`, ...args);
}

async function step(name, fn) {
  try {
    const out = await fn();
    passed += 1;
    log(`ok   ${name}`);
    return out;
  } catch (e) {
    failed += 1;
    log(`FAIL ${name}: ${e.stack || e}`);
    throw e;
  }
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
    srv.on('error', reject);
  });
}

function start(name, command, args, env) {
  const child = spawn(command, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines = [];
  const keep = (d) => {
    lines.push(d.toString());
    if (lines.length > 200) lines.shift();
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  child.on('exit', (code, signal) => {
    if (!child.stopping) log(`${name} exited (${code ?? signal}); last output:\n${lines.join('').slice(-4000)}`);
  });
  children.push(child);
  return child;
}

async function waitFor(what, fn, timeoutMs = 30000, everyMs = 200) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

// A minimal Redis client (RESP2), to read what the data bank stores.
function redis(port) {
  const sock = net.connect(port, '127.0.0.1');
  let buf = Buffer.alloc(0);
  const waiting = [];
  sock.on('data', (d) => {
    buf = Buffer.concat([buf, d]);
    for (;;) {
      const parsed = parse(buf, 0);
      if (!parsed) break;
      buf = buf.subarray(parsed.end);
      waiting.shift()(parsed.value);
    }
  });
  function parse(b, at) {
    const nl = b.indexOf('\r\n', at);
    if (nl < 0) return null;
    const head = b.toString('latin1', at + 1, nl);
    const type = String.fromCharCode(b[at]);
    if (type === '+' || type === '-') return { value: type === '-' ? new Error(head) : head, end: nl + 2 };
    if (type === ':') return { value: Number(head), end: nl + 2 };
    if (type === '$') {
      const n = Number(head);
      if (n < 0) return { value: null, end: nl + 2 };
      if (b.length < nl + 2 + n + 2) return null;
      return { value: b.toString('utf8', nl + 2, nl + 2 + n), end: nl + 2 + n + 2 };
    }
    if (type === '*') {
      const n = Number(head);
      const items = [];
      let end = nl + 2;
      for (let i = 0; i < n; i += 1) {
        const p = parse(b, end);
        if (!p) return null;
        items.push(p.value);
        end = p.end;
      }
      return { value: items, end };
    }
    throw new Error(`RESP: unexpected ${type}`);
  }
  const command = (...args) =>
    new Promise((resolve) => {
      waiting.push(resolve);
      sock.write(`*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(String(a))}\r\n${a}\r\n`).join('')}`);
    });
  return {
    command,
    async keys(pattern) {
      const out = [];
      let cursor = '0';
      do {
        const [next, batch] = await command('SCAN', cursor, 'MATCH', pattern, 'COUNT', 1000);
        cursor = next;
        out.push(...batch);
      } while (cursor !== '0');
      return out;
    },
    async dump(pattern) {
      let text = '';
      for (const key of await this.keys(pattern)) {
        const type = await command('TYPE', key);
        let value;
        if (type === 'string') value = await command('GET', key);
        else if (type === 'hash') value = await command('HGETALL', key);
        else if (type === 'list') value = await command('LRANGE', key, 0, -1);
        else if (type === 'set') value = await command('SMEMBERS', key);
        else if (type === 'zset') value = await command('ZRANGE', key, 0, -1);
        text += `${key} ${JSON.stringify(value)}\n`;
      }
      return text;
    },
    close: () => sock.end(),
  };
}

function forms(bytes) {
  // The ways a secret could be written: URL-safe base64, standard base64, hex.
  const b64u = anychain.b64uEncode(bytes);
  return [b64u, Buffer.from(bytes).toString('base64').replace(/=+$/, ''), Buffer.from(bytes).toString('hex')];
}

async function main() {
  await anychain.init(sodium);
  mkdirSync(artifacts, { recursive: true });
  for (const f of readdirSync(artifacts)) if (f.endsWith('.png')) rmSync(path.join(artifacts, f));
  const work = mkdtempSync(path.join(os.tmpdir(), 'alias-browser-'));
  const redisPort = Number(process.env.REDIS_PORT || 6379);
  const ns = `browser${process.pid}${Date.now() % 100000}`;
  const [bankPort, sinkPort] = [await freePort(), await freePort()];
  const bank = `http://127.0.0.1:${bankPort}`;
  const sinkDomain = `127.0.0.1:${sinkPort}`;

  // A small Google Takeout.
  const dumpDir = path.join(work, 'dump');
  await new Promise((resolve, reject) => {
    const gen = spawn(bin('dumpgen', 'DUMPGEN_BIN'), ['--provider', 'google', '--size', '300K', '--media-ratio', '0.2', '--out', dumpDir], { stdio: 'inherit' });
    gen.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`dumpgen exited ${code}`))));
  });
  const dumpFile = path.join(dumpDir, readdirSync(dumpDir).find((f) => f.endsWith('.zip')));

  // A local test sink: any client key (the test's is made below), and its
  // status page (loopback) to check what it received.
  start('alias-sink', bin('alias-sink', 'ALIAS_SINK_BIN'), ['--listen', `127.0.0.1:${sinkPort}`, '--dir', path.join(work, 'sink'), '--any-client', '--admin'], {});
  start('alias-bank', bin('alias-bank', 'ALIAS_BANK_BIN'), ['all'], {
    ALIAS_LISTEN: `127.0.0.1:${bankPort}`,
    ALIAS_PUBLIC_ORIGIN: bank,
    ALIAS_REDIS_URL: `redis://127.0.0.1:${redisPort}`,
    ALIAS_NAMESPACE: ns,
    ALIAS_STORAGE_URL: path.join(work, 'storage'),
    ALIAS_WORK_DIR: work,
    ALIAS_WEB_DIR: path.join(root, 'web'),
    ALIAS_PUSH_ALLOW: '127.0.0.0/8',
    ALIAS_RATE_PER_SEC: '1000',
    RUST_LOG: 'warn',
  });
  await waitFor('the data bank', async () => (await fetch(`${bank}/healthz`)).ok);
  await waitFor('the sink', async () => (await fetch(`http://${sinkDomain}/?format=json`)).ok);

  // The test client: its declaration and contract, pushing to the sink.
  const clientKey = anychain.keyPairFromSeed(new Uint8Array(32).fill(9));
  const decl = anychain.sign(clientKey, { type: 'alias.client.decl', name: 'Browser test client', desc: 'A client of the browser test.', domain: sinkDomain, crypto: { sign: clientKey.publicKey } }, Date.now());
  const contract = {
    type: 'alias.contract',
    client: decl,
    legal: { usage: 'testing the consent page', destination: ['nobody'], storage_duration: '1 day' },
    base: {
      contractual: { scopes: [{ provider: 'google', path: 'my_activity.search' }], usages: ['search statistics'] },
      consent: [{ scopes: [{ provider: 'google', path: 'youtube.watch_history' }], usages: ['recommendations'] }],
      legitimate: { groups: [] },
    },
    network: { scheme: 'http' },
  };
  const contractToken = anychain.toToken(contract);

  const redisClient = redis(redisPort);
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', args: ['--no-sandbox', '--disable-dev-shm-usage'] });
  const context = await browser.newContext({ viewport: { width: 420, height: 900 }, deviceScaleFactor: 1 });
  const page = await context.newPage();
  page.setDefaultTimeout(30000);
  const sent = [];
  context.on('request', (req) => {
    sent.push({ url: req.url(), method: req.method(), headers: req.headers(), body: req.postDataBuffer() });
  });
  const consoleErrors = [];
  const watch = (p) => {
    p.on('console', (m) => m.type() === 'error' && consoleErrors.push(m.text()));
    p.on('pageerror', (e) => consoleErrors.push(String(e)));
    p.on('dialog', (d) => d.accept());
  };
  watch(page);
  // The client's callback (the sink has none): answer it in the browser.
  const callbacks = [];
  await context.route(`http://${sinkDomain}/alias/cb/**`, (route) => {
    callbacks.push(route.request().url());
    route.fulfill({ status: 200, contentType: 'text/html', body: '<!doctype html><title>client</title><h1>Back at the client</h1>' });
  });
  const shot = (name) => page.screenshot({ path: path.join(artifacts, `${name}.png`), fullPage: true });
  const username = `user${process.pid}`;
  const password = 'correct horse battery staple';

  try {
    await step('sign up', async () => {
      await page.goto(`${bank}/signup`);
      await page.fill('#username', username);
      await page.fill('#password', password);
      await page.fill('#password2', password);
      await shot('01-signup');
      await page.click('#signup-button');
      await page.waitForURL(`${bank}/dashboard`, { timeout: 60000 });
      await page.waitForSelector('text=No dumps yet');
      assert.ok((await page.textContent('.who')).includes(`${username}@127.0.0.1:${bankPort}`));
      await shot('02-dashboard-new');
    });

    await step('session cookie is HttpOnly, SameSite=Lax, invisible to scripts', async () => {
      const cookies = await context.cookies(bank);
      const session = cookies.find((c) => c.name === 'alias_session');
      assert.ok(session, 'session cookie set');
      assert.equal(session.httpOnly, true);
      assert.equal(session.sameSite, 'Lax');
      assert.ok(session.expires > Date.now() / 1000, 'expires');
      assert.equal(await page.evaluate(() => document.cookie), '');
    });

    await step('upload a dump with a progress bar', async () => {
      await page.selectOption('#provider', 'google');
      await page.setInputFiles('#dump-file', dumpFile);
      await page.click('#upload-button');
      await page.waitForSelector('#upload-progress:not([hidden])');
      await page.waitForSelector('#status:has-text("Uploaded")', { timeout: 60000 });
      assert.equal(await page.getAttribute('#upload-progress', 'value'), '100');
      await page.waitForSelector('td.dump-name', { timeout: 60000 });
      await shot('03-dashboard-dump');
    });

    let code;
    let bindToken;
    await step('approve an authorization request', async () => {
      await page.goto(`${bank}/request?contract=${encodeURIComponent(contractToken)}&state=xyz&username=${username}`);
      await page.waitForSelector('#agree');
      const text = await page.textContent('main');
      assert.ok(text.includes('Browser test client'));
      assert.ok(text.includes('Your Google searches'), 'catalog description');
      assert.ok(text.includes('testing the consent page'), 'legal usage');
      assert.equal(await page.isChecked('#consent-0-0'), false, 'consent off by default');
      await shot('04-request');
      await page.check('#consent-0-0');
      await page.click('#agree');
      await page.waitForURL(`http://${sinkDomain}/alias/cb/**`);
      await shot('05-client-callback');
      const url = new URL(callbacks.at(-1));
      assert.equal(url.searchParams.get('state'), 'xyz');
      code = url.searchParams.get('code');
      bindToken = url.searchParams.get('bind');
      const grant = anychain.fromToken(code, { registry: alias.aliasRegistry() });
      assert.deepEqual(grant.body.base.consent, [[true]], 'the switch is in the consent matrix');
      const bind = anychain.fromToken(bindToken, { registry: alias.aliasRegistry() });
      assert.equal(bind.body.origin, bank);
    });

    let transferId;
    // The capability of the 202: the transfer is shown to its holder only.
    let transferAccess;
    await step('the client processes the grant; the transfer finishes on the dashboard', async () => {
      const resp = await fetch(`${bank}/alias/process`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', prefer: 'respond-async' },
        body: JSON.stringify({ grant: code, bind: bindToken }),
      });
      const body = await resp.json();
      assert.equal(resp.status, 202, JSON.stringify(body));
      transferId = body.transfer.id;
      transferAccess = body.access;
      await page.goto(`${bank}/dashboard`);
      await page.waitForSelector('article.client .transfer-state');
      await waitFor('the transfer to be done', async () => (await page.textContent('article.client .transfer-state')).trim() === 'done', 90000, 500);
      await shot('06-transfer-done');
      const sink = await (await fetch(`http://${sinkDomain}/?format=json`)).json();
      const t = sink.transfers.find((x) => x.id === transferId);
      assert.ok(t && t.finished && t.finish_verified, `the client received a verified transfer: ${JSON.stringify(t)}`);
      assert.ok(Object.keys(t.files).length >= 1);
    });

    await step('deny a request', async () => {
      await page.goto(`${bank}/request?contract=${encodeURIComponent(contractToken)}&state=second`);
      await shot('07-request-again');
      // A redirect is not routed by page.route: watch where the browser goes.
      const [req] = await Promise.all([
        page.waitForRequest((r) => r.url().startsWith(`http://${sinkDomain}/alias/cb/`)),
        page.click('#deny'),
      ]);
      const url = new URL(req.url());
      await page.waitForURL((u) => !u.href.startsWith(bank));
      assert.equal(url.searchParams.get('error'), 'access_denied');
      assert.equal(url.searchParams.get('state'), 'second');
      assert.equal(url.searchParams.get('code'), null);
    });

    await step('revoke from the dashboard', async () => {
      await page.goto(`${bank}/dashboard`);
      await page.click('button.revoke');
      await page.waitForSelector('article.client.revoked');
      const status = await (await fetch(`${bank}/alias/transfers/${transferId}`, { headers: { Authorization: `Bearer ${transferAccess}` } })).json();
      assert.equal(status.transfer?.revoked ?? status.revoked, true, JSON.stringify(status));
      await waitFor('the client to get the revoked grant', async () => {
        const sink = await (await fetch(`http://${sinkDomain}/?format=json`)).json();
        return sink.transfers.find((x) => x.id === transferId)?.revoked;
      }, 30000, 300);
      await page.reload();
      await shot('08-revoked');
    });

    await step('log out (the tab forgets the key) and log in again (a new session id)', async () => {
      await page.click('#logout-form button');
      await page.waitForURL(/\/login/);
      const cookieBefore = (await context.cookies(bank)).find((c) => c.name === 'alias_session').value;
      await page.fill('#username', username);
      await page.fill('#password', password);
      await shot('09-login');
      await page.click('#login-button');
      await page.waitForURL(`${bank}/dashboard`, { timeout: 60000 });
      const cookieAfter = (await context.cookies(bank)).find((c) => c.name === 'alias_session').value;
      assert.notEqual(cookieAfter, cookieBefore, 'a new session id at login');
    });

    await step('a new tab has no key: the consent page unlocks it with the password', async () => {
      const tab = await context.newPage();
      watch(tab);
      await tab.goto(`${bank}/request?contract=${encodeURIComponent(contractToken)}&state=tab`);
      await tab.click('#agree');
      await tab.waitForSelector('#unlock-password:visible');
      await tab.waitForSelector('#status:has-text("password")');
      await tab.fill('#unlock-password', password);
      await tab.screenshot({ path: path.join(artifacts, '10-unlock.png'), fullPage: true });
      await tab.click('#agree');
      await tab.waitForURL(`http://${sinkDomain}/alias/cb/**`, { timeout: 60000 });
      const url = new URL(callbacks.at(-1));
      assert.equal(url.searchParams.get('state'), 'tab');
      const grant = anychain.fromToken(url.searchParams.get('code'), { registry: alias.aliasRegistry() });
      assert.equal(grant.body.revoked, false, 'a newer grant after the revocation');
      assert.deepEqual(grant.body.base.consent, [[false]]);
      await tab.close();
    });

    await step('re-export: with the switch on, a newer dump sends a fresh transfer', async () => {
      await page.goto(`${bank}/dashboard`);
      const article = 'article.client:not(.revoked)';
      await page.check(`${article} input.reexport`);
      await page.waitForSelector('#status:has-text("fresh transfer")');
      await page.selectOption('#provider', 'google');
      await page.setInputFiles('#dump-file', dumpFile);
      await page.click('#upload-button');
      await page.waitForSelector('#status:has-text("1 fresh transfer(s) queued")', { timeout: 60000 });
      await page.waitForSelector('#events td:text-is("reexport")', { timeout: 30000 });
      await waitFor('the fresh transfer to be done', async () => (await page.textContent(`${article} .transfer-state`)).trim() === 'done', 90000, 500);
      assert.equal(await page.isChecked(`${article} input.reexport`), true, 'the switch is kept');
      await shot('11-reexport');
      // The client got the fresh run (its earlier state was the revocation).
      await waitFor('the client to receive the fresh transfer', async () => {
        const sink = await (await fetch(`http://${sinkDomain}/?format=json`)).json();
        const t = sink.transfers.find((x) => x.id === transferId);
        return t && !t.revoked && t.finished && t.finish_verified;
      }, 60000, 300);
      const status = await (await fetch(`${bank}/alias/transfers/${transferId}`, { headers: { Authorization: `Bearer ${transferAccess}` } })).json();
      const run = status.transfer ?? status;
      assert.equal(run.state, 'done');
      assert.equal(run.revoked, false);
    });

    await step('no password or private key ever reached the server', async () => {
      const record = JSON.parse(await redisClient.command('GET', `${ns}:kv:web:account:${username}`));
      assert.ok(record && record.publicKey, 'account record in Redis');
      const keys = await alias.deriveKeys(password, record.salt, record.pwhash);
      const secrets = [
        ...forms(keys.signSeed),
        ...forms(keys.signKeyPair.privateKey),
        ...forms(keys.boxKeyPair.privateKey),
        password,
        encodeURIComponent(password),
        password.replace(/ /g, '+'),
      ];
      assert.equal(anychain.b64uEncode(keys.signKeyPair.publicKey), record.publicKey);
      const stored = await redisClient.dump(`${ns}:*`);
      assert.ok(stored.length > 1000 && stored.includes(record.publicPwdHash), 'Redis was read');
      let bytes = 0;
      for (const req of sent) {
        const body = req.body ? req.body.toString('latin1') : '';
        bytes += body.length;
        const text = `${req.method} ${req.url}\n${JSON.stringify(req.headers)}\n${body}`;
        for (const s of secrets) assert.ok(!text.includes(s), `a secret was sent in ${req.method} ${req.url}`);
      }
      for (const s of secrets) assert.ok(!stored.includes(s), 'a secret is stored in Redis');
      log(`     checked ${sent.length} requests (${bytes} body bytes) and ${stored.length} characters of Redis`);
    });

    await step('no script errors on the pages', async () => {
      // The only failed load: the sink has no callback page for the denied request.
      assert.deepEqual(consoleErrors.filter((e) => !e.includes('favicon') && !e.includes('404')), []);
    });
  } finally {
    if (consoleErrors.length) log(`browser console errors:\n${consoleErrors.join('\n')}`);
    await browser.close();
    for (const key of await redisClient.keys(`${ns}:*`)) await redisClient.command('DEL', key);
    redisClient.close();
    for (const c of children) {
      c.stopping = true;
      c.kill('SIGTERM');
    }
    rmSync(work, { recursive: true, force: true });
    const shots = readdirSync(artifacts).filter((f) => f.endsWith('.png'));
    log(`screenshots in ${artifacts}: ${shots.join(', ')}`);
    console.log(`browser: ${passed} passed, ${failed} failed`);
  }
}

main().then(
  () => process.exit(failed ? 1 : 0),
  (e) => {
    console.error(e);
    for (const c of children) c.kill('SIGKILL');
    process.exit(1);
  },
);
