// The dashboard: dump upload (signed request, with progress), deletion,
// revocation (a newer revoked grant signed here), the re-export switches,
// and the transfers' progress, refreshed every few seconds.

import { ready, postJSON, getJSON, say, keyPair, anychain, alias, origin } from './bank.js';

const EXTENSIONS = ['.zip', '.tgz', '.tar.gz', '.tar'];

function dumpName(file) {
  const lower = file.name.toLowerCase();
  const ext = EXTENSIONS.find((e) => lower.endsWith(e));
  if (!ext) throw new Error('choose a .zip, .tgz, .tar.gz or .tar file');
  const stem = file.name.slice(0, file.name.length - ext.length).replace(/[^A-Za-z0-9._-]+/g, '_').replace(/^[._-]+/, '') || 'dump';
  return `${stem.slice(0, 100)}${ext}`;
}

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
      else reject(new Error(data.reason || `upload failed (${xhr.status})`));
    };
    xhr.onerror = () => reject(new Error('upload failed: network error'));
    xhr.send(file);
  });
}

async function upload(event) {
  event.preventDefault();
  const file = document.getElementById('dump-file').files[0];
  const provider = document.getElementById('provider').value;
  const progress = document.getElementById('upload-progress');
  const button = document.getElementById('upload-button');
  if (!file) return say('Choose a file to upload.', true);
  button.disabled = true;
  try {
    await ready();
    const kp = await keyPair();
    const path = `/alias/dumps/${provider}/${dumpName(file)}`;
    const signed = alias.signRequest(kp, { method: 'PUT', path, origin: origin(), size: file.size });
    progress.hidden = false;
    progress.value = 0;
    const result = await put(path, file, alias.authorizationHeader(signed), (done, total) => {
      progress.value = Math.floor((done * 100) / total);
      say(`Uploading: ${progress.value}%`);
    });
    progress.value = 100;
    const again = (result.reexports || []).length;
    say(`Uploaded ${file.name}.${again ? ` ${again} fresh transfer(s) queued.` : ''}`);
    setTimeout(() => window.location.reload(), 600);
  } catch (e) {
    say(e.message, true);
    button.disabled = false;
  }
}

async function deleteDump(button) {
  if (!window.confirm(`Delete ${button.dataset.name}?`)) return;
  try {
    await ready();
    const kp = await keyPair();
    const path = `/alias/dumps/${button.dataset.provider}/${button.dataset.name}`;
    const signed = alias.signRequest(kp, { method: 'DELETE', path, origin: origin() });
    const resp = await fetch(path, { method: 'DELETE', headers: { Authorization: alias.authorizationHeader(signed) } });
    if (!resp.ok) throw new Error((await resp.json()).reason);
    say('Deleted.');
    window.location.reload();
  } catch (e) {
    say(e.message, true);
  }
}

function grantOf(contract) {
  const el = [...document.querySelectorAll('script.grant-data')].find((s) => s.dataset.contract === contract);
  return anychain.decode(el.textContent);
}

async function revoke(button) {
  const name = button.closest('article').querySelector('h3').firstChild.textContent.trim();
  if (!window.confirm(`Revoke the grant of ${name}? Transfers stop and the client is told.`)) return;
  button.disabled = true;
  try {
    await ready();
    const kp = await keyPair();
    const grant = grantOf(button.dataset.contract);
    alias.checkGrantClear(grant);
    const date = Math.max(Date.now(), grant.date + 1);
    const revoked = alias.signRevokedGrant(kp, grant.body.contract, { date });
    await postJSON('/web/grants', { grant: anychain.toToken(revoked) });
    say(`Revoked ${name}.`);
    window.location.reload();
  } catch (e) {
    say(e.message, true);
    button.disabled = false;
  }
}

async function reexport(input) {
  try {
    await postJSON('/web/reexport', { contract: input.dataset.contract, enabled: input.checked });
    say(input.checked ? 'A newer dump will start a fresh transfer.' : 'Re-export is off.');
  } catch (e) {
    input.checked = !input.checked;
    say(e.message, true);
  }
}

async function refresh() {
  try {
    const { clients } = await getJSON('/web/transfers');
    for (const c of clients) {
      const article = document.querySelector(`article[data-contract="${CSS.escape(c.contract)}"]`);
      if (!article || !c.transfer) continue;
      const t = c.transfer;
      article.querySelector('.transfer-state').textContent = t.state;
      article.querySelector('.transfer-bytes').textContent = `${t.bytes_done} of ${t.bytes_total} bytes, ${t.files_done}/${t.files_total} files, ${t.updated}`;
      article.querySelector('.transfer-detail').textContent = t.detail;
    }
  } catch {
    /* try again later */
  }
}

document.getElementById('upload-form').addEventListener('submit', upload);
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
});
document.querySelectorAll('input.reexport').forEach((input) => input.addEventListener('change', () => reexport(input)));
setInterval(refresh, 2000);
