// The pages' pure helpers (web/app/format.js).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { humanBytes, localTime, clockTime, retryWords, stateWords, progressWords, dumpPath, previewWords, previewStateWords } from '../app/format.js';

test('sizes read as people read them', () => {
  assert.equal(humanBytes(0), '0 bytes');
  assert.equal(humanBytes(1), '1 byte');
  assert.equal(humanBytes(999), '999 bytes');
  assert.equal(humanBytes(1400), '1.4 kB');
  assert.equal(humanBytes(1_400_000), '1.4 MB');
  assert.equal(humanBytes(12_000_000_000), '12 GB');
  assert.equal(progressWords({ bytes_done: 500_000, bytes_total: 2_000_000, files_done: 1, files_total: 2 }), '500 kB of 2.0 MB, 1 of 2 files');
  assert.equal(progressWords({ bytes_total: 0 }), '');
});

test('times are local, states are words', () => {
  const ms = Date.UTC(2026, 0, 2, 23, 30);
  assert.match(localTime(ms, 'en-GB', 'Europe/Paris'), /3 Jan 2026.*00:30/);
  assert.match(localTime(ms, 'en-GB', 'UTC'), /2 Jan 2026.*23:30/);
  assert.equal(localTime(0), '');
  assert.equal(stateWords('pushing'), 'Sending');
  assert.equal(stateWords('done'), 'Delivered');
  assert.equal(stateWords('done', true), 'Client told of the withdrawal');
  assert.equal(stateWords('failed', true), 'Failed');
});

test('retries read as the attempt and the next try in local time', () => {
  const ms = Date.UTC(2026, 0, 2, 23, 30);
  assert.equal(clockTime(ms, 'en-GB', 'Europe/Paris'), '00:30');
  assert.equal(clockTime(0), '');
  const t = { state: 'pushing', retry_attempt: 3, retry_next_ms: ms };
  assert.equal(retryWords(t, 'en-GB', 'UTC'), 'Retrying (attempt 3), next try at 23:30');
  assert.equal(retryWords({ ...t, retry_attempt: 0 }), '');
  assert.equal(retryWords({ ...t, state: 'failed' }), '', 'no retry once it failed');
});

test('dump paths keep the name people have, encoded as one segment', () => {
  assert.equal(dumpPath('amazon', 'Your Orders.zip'), '/alias/dumps/amazon/Your%20Orders.zip');
  assert.equal(dumpPath('google', 'takeout-20250101-001.ZIP'), '/alias/dumps/google/takeout-20250101-001.ZIP');
  assert.equal(dumpPath('amazon', 'a%2F#?.tar.gz'), '/alias/dumps/amazon/a%252F%23%3F.tar.gz');
  for (const bad of ['', '..', 'a/b.zip', 'a\\b.zip', 'a\nb.zip', 'x\u202Epiz.zip', 'notes.txt', `${'é'.repeat(130)}.zip`]) {
    assert.throws(() => dumpPath('amazon', bad), Error, JSON.stringify(bad));
  }
});

test('previews read as words', () => {
  assert.equal(previewWords({ files: 3, records: 12, bytes: 1_400_000 }), '12 records in 3 files (1.4 MB)');
  assert.equal(previewWords({ files: 1, records: 1, bytes: 10 }), '1 record in 1 file (10 bytes)');
  assert.equal(previewWords({ files: 2, records: 0, bytes: 2000 }), '2 files (2.0 kB)');
  assert.equal(previewWords({ files: 0, records: 0, bytes: 0 }), 'nothing: none of your files match');
  assert.equal(previewWords(null), 'nothing: none of your files match');
  assert.match(previewStateWords({ state: 'pending' }), /Looking/);
  assert.match(previewStateWords({ state: 'failed' }), /could not read/);
  assert.equal(previewStateWords({ state: 'none' }), '');
});
