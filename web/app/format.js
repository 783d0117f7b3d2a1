// Pure helpers of the pages (no DOM, no imports), tested by node:test:
// human sizes, local times, transfer states in words, and the path of a
// dump named as the user's file is named.

const UNITS = ['bytes', 'kB', 'MB', 'GB', 'TB'];

/** A size in bytes as people read it: `532 bytes`, `1.4 MB`, `12 GB`. */
export function humanBytes(n) {
  const bytes = Number(n) || 0;
  let v = bytes;
  let unit = 0;
  while (v >= 1000 && unit < UNITS.length - 1) {
    v /= 1000;
    unit += 1;
  }
  if (unit === 0) return `${bytes} ${bytes === 1 ? 'byte' : 'bytes'}`;
  return `${v < 10 ? v.toFixed(1) : v.toFixed(0)} ${UNITS[unit]}`;
}

/** Milliseconds since the epoch in the reader's local time. */
export function localTime(ms, locale = undefined, timeZone = undefined) {
  const d = new Date(Number(ms));
  if (!Number.isFinite(d.getTime()) || Number(ms) <= 0) return '';
  return d.toLocaleString(locale, { dateStyle: 'medium', timeStyle: 'short', timeZone });
}

/** Milliseconds since the epoch as a local clock time (`14:05`). */
export function clockTime(ms, locale = undefined, timeZone = undefined) {
  const d = new Date(Number(ms));
  if (!Number.isFinite(d.getTime()) || Number(ms) <= 0) return '';
  return d.toLocaleTimeString(locale, { hour: '2-digit', minute: '2-digit', timeZone });
}

/**
 * "Retrying (attempt 3), next try at 14:05" while the client fails and the
 * data bank will try again; '' otherwise.
 */
export function retryWords(t, locale = undefined, timeZone = undefined) {
  if (!t || !t.retry_attempt || ['done', 'failed', 'cancelled'].includes(t.state)) return '';
  return `Retrying (attempt ${t.retry_attempt}), next try at ${clockTime(t.retry_next_ms, locale, timeZone)}`;
}

/** A transfer state in words (the same words as the server's). */
export function stateWords(state, revoked = false) {
  if (state === 'failed') return 'Failed';
  if (state === 'cancelled') return 'Stopped';
  if (revoked) return state === 'done' ? 'Client told of the withdrawal' : 'Telling the client of the withdrawal';
  return (
    {
      accepted: 'Waiting to start',
      processing: 'Preparing your data',
      pushing: 'Sending',
      done: 'Delivered',
    }[state] || 'Unknown'
  );
}

/** "1.2 MB of 3.4 MB, 1 of 2 files", or '' before anything is known. */
export function progressWords(t) {
  if (!t || !t.bytes_total) return '';
  return `${humanBytes(t.bytes_done)} of ${humanBytes(t.bytes_total)}, ${t.files_done} of ${t.files_total} files`;
}

const EXTENSIONS = ['.tar.gz', '.tgz', '.zip', '.tar'];

/**
 * The path of the dump `name` of `provider`: the name is the file's own
 * (`Your Orders.zip`), percent-encoded as one path segment; the data bank
 * keeps it for display and derives a safe storage name. Names that cannot
 * be a file name are refused here with a reason for people.
 */
export function dumpPath(provider, name) {
  const lower = String(name).toLowerCase();
  if (!EXTENSIONS.some((e) => lower.endsWith(e))) throw new Error('Choose a .zip, .tgz, .tar.gz or .tar file, as the provider gave it to you.');
  // eslint-disable-next-line no-control-regex
  if (name === '.' || name === '..' || /[\u0000-\u001f\u007f-\u009f/\\\u202a-\u202e\u2066-\u2069\u200e\u200f]/.test(name)) {
    throw new Error('This file name cannot be used: rename the file and try again.');
  }
  if (new TextEncoder().encode(name).length > 255) throw new Error('This file name is too long: rename the file and try again.');
  return `/alias/dumps/${encodeURIComponent(provider)}/${encodeURIComponent(name)}`;
}

const plural = (n, one, many) => `${n.toLocaleString('en')} ${n === 1 ? one : many}`;

/**
 * One scope of a preview in words: `12 records in 3 files (1.4 MB)`, or
 * `3 files (1.4 MB)` for files taken whole, or `nothing` (plain text: the
 * page sets it with textContent).
 */
export function previewWords(s) {
  const files = Number(s && s.files) || 0;
  const records = Number(s && s.records) || 0;
  if (files === 0) return 'nothing: none of your files match';
  const size = humanBytes(s.bytes);
  if (records > 0) return `${plural(records, 'record', 'records')} in ${plural(files, 'file', 'files')} (${size})`;
  return `${plural(files, 'file', 'files')} (${size})`;
}

/** A preview's state (the answer of GET /web/preview) in words. */
export function previewStateWords(answer) {
  switch (answer && answer.state) {
    case 'pending':
      return 'Looking through your exports…';
    case 'ready':
      return 'What this client would receive from the exports the data bank holds for you, counted as the real transfer would:';
    case 'failed':
      return 'The data bank could not read your exports for this client; a transfer would fail the same way.';
    default:
      return '';
  }
}
