// The Qwen2.5-Coder tokenizer through @huggingface/tokenizers (JS) must give the ids the Python
// `tokenizers` library gives (fixtures/qwen_tokenizer_parity.json, written by
// fixtures/make_qwen_tokenizer_parity.py). Needs the tokenizer: VFFN_QWEN_TOKENIZER=/path/tokenizer.json,
// or the default model folder models/qwen2.5-coder-0.5b-vffn; skipped otherwise.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import type { Manifest } from '../../../backend/src/engine/modelFolder';
import { readManifest } from '../../../backend/src/engine/modelFolder';
import { bannedIds } from '../../../backend/src/engine/completion';
import { CodeTokenizer, headEnd } from '../../../backend/src/engine/tokenizer';
import { MODELS, SPECIAL } from './helpers';

const QWEN_DIR = path.join(MODELS, 'qwen2.5-coder-0.5b-vffn');
const QWEN_SPECIAL = {
  eot: ['<|endoftext|>', 151643], pad: ['<|fim_pad|>', 151662], fim_prefix: ['<|fim_prefix|>', 151659],
  fim_suffix: ['<|fim_suffix|>', 151661], fim_middle: ['<|fim_middle|>', 151660], file_sep: ['<|file_sep|>', 151664],
} as const;

interface Case { name: string; text: string; ids: number[] }
const fixture: { cases: Case[] } = JSON.parse(readFileSync(path.join(__dirname, 'fixtures', 'qwen_tokenizer_parity.json'), 'utf8'));

/** The tokenizer and a manifest to load it with, or why the test is skipped. */
function locate(): { dir: string; manifest: Manifest } | string {
  const env = process.env.VFFN_QWEN_TOKENIZER;
  if (env) {
    if (!existsSync(env)) return `VFFN_QWEN_TOKENIZER=${env} does not exist`;
    const dir = path.dirname(path.resolve(env));
    const special = Object.fromEntries(Object.entries(QWEN_SPECIAL).map(([k, v]) => [k, v[1]]));
    const tokens = Object.fromEntries(Object.entries(QWEN_SPECIAL).map(([k, v]) => [k, v[0]]));
    const config = existsSync(path.join(dir, 'tokenizer_config.json')) ? 'tokenizer_config.json' : undefined;
    const manifest = {
      architecture: { vocab_size: 151936 },
      tokenizer: { file: path.basename(env), config_file: config, special_tokens: tokens, special_ids: special },
    } as unknown as Manifest;
    return { dir, manifest };
  }
  if (existsSync(path.join(QWEN_DIR, 'manifest.json'))) return { dir: QWEN_DIR, manifest: readManifest(QWEN_DIR) };
  return `no Qwen tokenizer: set VFFN_QWEN_TOKENIZER=/path/to/tokenizer.json or build ${path.relative(process.cwd(), QWEN_DIR)} (scripts/setup.sh)`;
}

const found = locate();
const skip = typeof found === 'string' ? found : false;
if (skip) test('Qwen tokenizer parity', { skip }, () => undefined);

test('JS encodes the fixture exactly as Python tokenizers did, and decodes back', { skip }, () => {
  const { dir, manifest } = found as Exclude<typeof found, string>;
  const tok = CodeTokenizer.load(dir, manifest);
  let tokens = 0;
  for (const c of fixture.cases) {
    assert.deepEqual(tok.encodeRaw(c.text), c.ids, `ids differ for ${c.name}: ${JSON.stringify(c.text.slice(0, 60))}`);
    assert.equal(tok.decode(c.ids), c.text.normalize('NFC'), `decode differs for ${c.name}`);
    tokens += c.ids.length;
  }
  assert.ok(tokens > 3000, `fixture too small (${tokens} tokens)`);
  for (const [name, [text, id]] of Object.entries(QWEN_SPECIAL)) {
    assert.equal(tok.special[name as keyof typeof tok.special], id);
    assert.deepEqual(tok.encodeRaw(text), [id], `${text} is one token`);
  }
  // Every special added token that is not a stop token is banned from completions (<|im_start|>, [PAD151665], …).
  const stops = [151643, 151664, 151645, 151663, 151659, 151660, 151661, 151662];
  const banned = bannedIds({ tokenizer: tok }, stops);
  assert.ok(banned.includes(151644) && banned.includes(151935) && banned.every((id) => id >= 151643 && !stops.includes(id)));
});

test('Qwen: the head cache splits at line starts and gives the ids of encoding whole', { skip }, () => {
  const { dir, manifest } = found as Exclude<typeof found, string>;
  const tok = CodeTokenizer.load(dir, manifest);
  // Qwen2's pre-tokenizer keeps indentation apart from the newline before it (the project's own
  // tokenizers join them), so the split is at the line start, not the first non-blank character.
  assert.equal(tok.splitMode, 'lineStart');
  const text = fixture.cases.map((c) => c.text).join('\n');
  assert.ok(text.length > 2048);
  for (const cut of [text.length, text.length - 300, text.length - 777]) {
    const t = text.slice(0, cut);
    assert.deepEqual(tok.encode(t), tok.encodeRaw(t));
    assert.deepEqual(tok.encode(t + 'x'), tok.encodeRaw(t + 'x'), 'typing one more character reuses the head');
  }
});

test('banned ids: FIM markers, padding and special added tokens, less the stop ids', () => {
  const tok = { special: SPECIAL, controlIds: [0, 1, 2, 3, 4, 5, 9] } as unknown as CodeTokenizer;
  assert.deepEqual(bannedIds({ tokenizer: tok }, [0, 5]), [1, 2, 3, 4, 9]);
  assert.deepEqual(bannedIds({ tokenizer: { ...tok, controlIds: [] } as unknown as CodeTokenizer }, [0, 5, 3]), [1, 2, 4]);
});

test('headEnd: the first non-blank character (indent) or the start (lineStart) of a non-blank line', () => {
  const text = 'a\n    b\n' + '  \n'.repeat(100) + 'x'.repeat(200);
  const line = text.indexOf('    b');
  assert.equal(headEnd(text, 'indent'), line + 4);
  assert.equal(headEnd(text, 'lineStart'), line);
  assert.equal(headEnd('short'), 0);
  // A line of only whitespace (here a form feed) is no split point.
  assert.equal(headEnd('\n\f\n' + 'y'.repeat(200), 'lineStart'), 0);
});
