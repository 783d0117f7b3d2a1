// The consent page's preview in the browser test (imported by flow.mjs; a
// .js file so that scripts/browser-test does not run it on its own): a
// user whose Google export holds a search record with markup signs up,
// uploads it, and on each viewport presses "Show what they would receive"
// on a consent request. The result is awaited by polling the DOM; the
// counts, sizes and first file names must be there as text, the markup
// record shown as text (no element made of it, its handler never run), and
// axe-core must find nothing on that page state.

import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import zlib from 'node:zlib';

/** A search the user made that is also markup: shown as text, or it runs. */
export const MARKUP = 'Searched for <img src=x onerror=window.__previewXss=1>';

/**
 * A zip archive with the given entries stored (no compression), names in
 * UTF-8: enough for a small hand-made export.
 * @param {{name: string, data: Buffer}[]} entries
 */
export function storedZip(entries) {
  const local = [];
  const central = [];
  let offset = 0;
  // 2026-01-02 03:04:06 in DOS form.
  const time = (3 << 11) | (4 << 5) | 3;
  const date = ((2026 - 1980) << 9) | (1 << 5) | 2;
  for (const { name, data } of entries) {
    const nameBytes = Buffer.from(name, 'utf8');
    const crc = zlib.crc32(data);
    const head = Buffer.alloc(30);
    head.writeUInt32LE(0x04034b50, 0);
    head.writeUInt16LE(20, 4);
    head.writeUInt16LE(0x0800, 6);
    head.writeUInt16LE(0, 8);
    head.writeUInt16LE(time, 10);
    head.writeUInt16LE(date, 12);
    head.writeUInt32LE(crc, 14);
    head.writeUInt32LE(data.length, 18);
    head.writeUInt32LE(data.length, 22);
    head.writeUInt16LE(nameBytes.length, 26);
    head.writeUInt16LE(0, 28);
    const dir = Buffer.alloc(46);
    dir.writeUInt32LE(0x02014b50, 0);
    dir.writeUInt16LE(20, 4);
    dir.writeUInt16LE(20, 6);
    dir.writeUInt16LE(0x0800, 8);
    dir.writeUInt16LE(0, 10);
    dir.writeUInt16LE(time, 12);
    dir.writeUInt16LE(date, 14);
    dir.writeUInt32LE(crc, 16);
    dir.writeUInt32LE(data.length, 20);
    dir.writeUInt32LE(data.length, 24);
    dir.writeUInt16LE(nameBytes.length, 28);
    dir.writeUInt32LE(offset, 42);
    local.push(head, nameBytes, data);
    central.push(dir, nameBytes);
    offset += head.length + nameBytes.length + data.length;
  }
  const dirBytes = Buffer.concat(central);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(entries.length, 8);
  end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(dirBytes.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...local, dirBytes, end]);
}

/** A small Google Takeout: 4 searches (the first is {@link MARKUP}) and 3 watched videos. */
export function markupTakeout(file) {
  const time = (i) => new Date(Date.UTC(2025, 0, 10 + i, 12, 0, 0)).toISOString();
  const searches = [MARKUP, 'Searched for bread recipes', 'Visited bakery.example – guide', 'Searched for rye flour'].map((title, i) => ({
    header: 'Search',
    title,
    titleUrl: `https://www.google.com/search?q=q${i}`,
    time: time(i),
    products: ['Search'],
  }));
  const watched = ['Watched Kneading by hand', 'Watched Sourdough starter', 'Watched Oven spring'].map((title, i) => ({
    header: 'YouTube',
    title,
    titleUrl: `https://www.youtube.com/watch?v=v${i}`,
    time: time(i),
    products: ['YouTube'],
  }));
  const json = (v) => Buffer.from(JSON.stringify(v, null, 2));
  writeFileSync(
    file,
    storedZip([
      { name: 'Takeout/My Activity/Search/MyActivity.json', data: json(searches) },
      { name: 'Takeout/YouTube and YouTube Music/history/watch-history.json', data: json(watched) },
    ]),
  );
}

/**
 * The contract the preview is asked for: the searches' title and time
 * (contractual), the watched videos' title and time (consent); both
 * filtered, so records are counted and sampled.
 */
export function previewContract(base) {
  return {
    ...base,
    legal: { ...base.legal, usage: 'the preview test' },
    base: {
      contractual: { scopes: [{ provider: 'google', path: 'my_activity.search', fields: ['title', 'time'] }], usages: ['search statistics'] },
      consent: [{ scopes: [{ provider: 'google', path: 'youtube.watch_history', fields: ['title', 'time'] }], usages: ['recommendations'] }],
      legitimate: { groups: [] },
    },
  };
}

/**
 * On a consent page already loaded (its first GET /web/preview answered):
 * press the preview button, wait for the result in the DOM, check it.
 * Returns the milliseconds from the press to the result shown.
 */
export async function pressAndCheckPreview(p, label) {
  const pressed = Date.now();
  await p.click('#preview-start');
  // Disabled by the press, enabled again only by a finished answer.
  await p.waitForFunction(
    () => {
      const box = document.getElementById('preview');
      return !document.getElementById('preview-start').disabled && box.getAttribute('aria-busy') === 'false' && box.querySelector('li');
    },
    undefined,
    { timeout: 120000, polling: 100 },
  );
  const shownMs = Date.now() - pressed;
  const status = (await p.textContent('#preview-status')).trim();
  assert.ok(status.startsWith('What this client would receive'), `${label}: ${status}`);
  const scopes = await p.$$eval('#preview-scopes > li.preview-scope', (items) =>
    items.map((li) => ({
      scope: li.querySelector('code').textContent,
      label: li.querySelector('span').textContent,
      rawShown: li.querySelector('details').open,
      words: li.querySelector('strong').textContent,
      files: [...li.querySelectorAll('.preview-files li')].map((f) => f.textContent),
      samples: [...li.querySelectorAll('pre.preview-sample')].map((s) => s.textContent),
    })),
  );
  assert.equal(scopes.length, 2, `${label}: ${JSON.stringify(scopes)}`);
  const search = scopes.find((s) => s.scope.includes('my_activity.search'));
  const watch = scopes.find((s) => s.scope.includes('youtube.watch_history'));
  assert.ok(search && watch, `${label}: both scopes: ${JSON.stringify(scopes)}`);
  // Scopes are named in the catalog's words; the raw strings wait behind "Details".
  for (const s of scopes) {
    assert.ok(s.label.length > 0 && !s.label.includes(s.scope) && !/[{}[\]]/.test(s.label), `${label}: words for ${s.scope}: ${s.label}`);
    assert.equal(s.rawShown, false, `${label}: ${s.scope} shown raw`);
  }
  assert.match(search.words, /^4 records in 1 file \(\d+(\.\d)? (bytes|kB)\)$/, `${label}: search counts`);
  assert.match(watch.words, /^3 records in 1 file \(\d+(\.\d)? (bytes|kB)\)$/, `${label}: watch counts`);
  assert.ok(search.files.some((f) => f.endsWith('MyActivity.json')), `${label}: first files ${search.files}`);
  assert.ok(watch.files.some((f) => f.endsWith('watch-history.json')), `${label}: first files ${watch.files}`);
  // Nothing was made of the record with markup, and it is there as text.
  const made = await p.evaluate(() => ({
    elements: document.querySelectorAll('#preview img, #preview script, #preview-scopes pre *').length,
    ran: window.__previewXss,
  }));
  assert.deepEqual(made, { elements: 0, ran: undefined }, `${label}: the sample was parsed as HTML`);
  assert.ok(search.samples.length >= 1 && search.samples.length <= 3, `${label}: samples ${search.samples}`);
  assert.ok(search.samples.some((s) => s.includes(MARKUP)), `${label}: the markup record as text: ${search.samples}`);
  assert.ok(watch.samples.some((s) => s.includes('Watched Kneading by hand')), `${label}: ${watch.samples}`);
  return shownMs;
}
