import assert from 'node:assert/strict';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { EmbeddingRows, tokenInput } from '../../../backend/src/engine/embeddingRows';
import type { Manifest } from '../../../backend/src/engine/modelFolder';
import { tempDir } from './helpers';

const VOCAB = 3;
const D = 64;
const manifest = { architecture: { vocab_size: VOCAB, d_model: D } } as unknown as Manifest;

interface Entry { dtype: string; shape: number[]; bytes: Uint8Array }

/** A safetensors file as the spec lays it out: u64 LE header length, JSON header, data. */
function safetensors(file: string, tensors: Record<string, Entry>, headerOverride?: string): void {
  let at = 0;
  const header: Record<string, unknown> = {};
  for (const [name, t] of Object.entries(tensors)) {
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [at, at + t.bytes.length] };
    at += t.bytes.length;
  }
  const json = Buffer.from(headerOverride ?? JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  writeFileSync(file, Buffer.concat([len, json, ...Object.values(tensors).map((t) => Buffer.from(t.bytes))]));
}

/** Row r: q8 = 128 + (j % 7) - 3 + r, scales 0.5 · (r + 1) for block 0, 0.25 for block 1. */
function table(): { q8: Entry; scales: Entry } {
  const q = new Uint8Array(VOCAB * D);
  for (let r = 0; r < VOCAB; r++) for (let j = 0; j < D; j++) q[r * D + j] = 128 + (j % 7) - 3 + r;
  const s = new Float32Array(VOCAB * 2);
  for (let r = 0; r < VOCAB; r++) s.set([0.5 * (r + 1), 0.25], r * 2);
  return { q8: { dtype: 'U8', shape: [VOCAB, D], bytes: q }, scales: { dtype: 'F32', shape: [VOCAB, 2], bytes: new Uint8Array(s.buffer) } };
}

test('rows are (q8 - 128) * the block scale, in the order of the ids', () => {
  const dir = tempDir();
  const file = path.join(dir, 'embeddings.safetensors');
  safetensors(file, table());
  const e = EmbeddingRows.open(file, manifest);
  const rows = e.rows([2, 0, 2]);
  assert.equal(rows.length, 3 * D);
  const expect = (r: number, j: number) => ((j % 7) - 3 + r) * (j < 32 ? 0.5 * (r + 1) : 0.25);
  for (const [t, r] of [[0, 2], [1, 0], [2, 2]]) {
    for (let j = 0; j < D; j++) assert.equal(rows[t * D + j], expect(r, j), `token ${t} column ${j}`);
  }
  const fed = tokenInput([2, 0], e);
  assert.deepEqual([fed.type, fed.dims], ['float32', [1, 2, D]]);
  assert.deepEqual(fed.data, rows.subarray(0, 2 * D));
  const ids = tokenInput([2, 0]);
  assert.deepEqual([ids.type, ids.dims, [...(ids.data as BigInt64Array)]], ['int64', [1, 2], [2n, 0n]]);
  assert.throws(() => e.rows([VOCAB]), /token id 3 is outside the vocabulary of 3/);
  e.close();
  assert.throws(() => e.rows([0]), /after the model was closed/);
  rmSync(dir, { recursive: true });
});

test('a file that does not match the manifest is refused with what is wrong', () => {
  const dir = tempDir();
  const file = path.join(dir, 'embeddings.safetensors');
  const t = table();
  const cases: [string, () => void, RegExp][] = [
    ['missing', () => rmSync(file, { force: true }), /ENOENT/],
    ['empty', () => writeFileSync(file, ''), /too short/],
    ['not JSON', () => safetensors(file, t, '{nope'), /header is not JSON/],
    ['wrong dtype', () => safetensors(file, { ...t, scales: { ...t.scales, dtype: 'F16' } }), /"scales" should be F32 \[3, 2\].*is F16/],
    ['other vocabulary', () => safetensors(file, { ...t, q8: { ...t.q8, shape: [4, D] } }), /"q8" should be U8 \[3, 64\].*is U8 \[4, 64\]/],
    ['no scales', () => safetensors(file, { q8: t.q8 }), /"scales".*is missing/],
    ['truncated', () => { safetensors(file, t); writeFileSync(file, readFileSync(file).subarray(0, 300)); }, /does not fit the file/],
  ];
  for (const [what, make, message] of cases) {
    make();
    assert.throws(() => EmbeddingRows.open(file, manifest), message, what);
  }
  rmSync(dir, { recursive: true });
});
