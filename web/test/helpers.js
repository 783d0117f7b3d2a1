// Shared test setup: a ready libsodium, the anychain module initialised with
// it, and the reference vector files (from ALIAS_VECTORS_DIR when set, as the
// Rust tests do; otherwise protocol/tests/data of this checkout).
import sodium from 'libsodium-wrappers-sumo';
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { init } from '../src/anychain.js';

export const here = dirname(fileURLToPath(import.meta.url));
export const repoRoot = resolve(here, '..', '..');

await init(sodium);
export { sodium };

export const vectorsDir = process.env.ALIAS_VECTORS_DIR
  ? resolve(process.env.ALIAS_VECTORS_DIR)
  : join(repoRoot, 'protocol', 'tests', 'data');

/** A vector file parsed with JSON.parse (JavaScript key order, numbers as doubles). */
export function loadVectors(name) {
  return JSON.parse(readFileSync(join(vectorsDir, name), 'utf8'));
}

/** Hex text to bytes. */
export function fromHex(hex) {
  return Uint8Array.from(hex.match(/../g) ?? [], (b) => parseInt(b, 16));
}

/** Options for the password hash that keep tests fast (libsodium's minimum work). */
export const FAST_PWHASH = { opslimit: 1, memlimit: 8192 };
