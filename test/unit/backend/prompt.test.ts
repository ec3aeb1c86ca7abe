import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { buildPrompt, defaultBudget, fitPrefix, fitSuffix, PREFIX_CUT_STEP, stablePrefixCut } from '../../../backend/src/engine/prompt';
import { CodeTokenizer } from '../../../backend/src/engine/tokenizer';
import { readManifest } from '../../../backend/src/engine/modelFolder';
import { charEncoder, REPO, SPECIAL, TINY } from './helpers';

const enc = (s: string) => charEncoder.encode(s);

test('short input: PSM layout with every token kept', () => {
  const p = buildPrompt(charEncoder, SPECIAL, { prefix: 'ab', suffix: 'cd' }, { total: 100, suffixMax: 10, contextMax: 20 });
  assert.deepEqual(p.ids, [2, ...enc('ab'), 3, ...enc('cd'), 4]);
  assert.equal(p.truncated, false);
});

test('SPM layout (manifest fim.order "spm"): the suffix first, the prefix right before the middle', () => {
  const input = { prefix: 'ab', suffix: 'cd', contextChunks: [{ uri: 'a.ts', text: 'q' }] };
  const budget = { total: 100, suffixMax: 10, contextMax: 40 };
  const spm = buildPrompt(charEncoder, SPECIAL, input, budget, 'spm');
  assert.deepEqual(spm.ids, [5, ...enc('a.ts\nq\n'), 2, 3, ...enc('cd'), 4, ...enc('ab')]);
  const psm = buildPrompt(charEncoder, SPECIAL, input, budget, 'psm');
  assert.deepEqual({ ...spm, ids: [] }, { ...psm, ids: [] }, 'same budgeting, only the order differs');
});

test('SPM: the prefix takes the room a short suffix leaves; PSM keeps it for the largest suffix', () => {
  const prefix = 'abcdefghi\n'.repeat(9);   // 90 tokens: within 100 - 3 - 2, beyond 100 - 3 - 25
  const budget = { total: 100, suffixMax: 25, contextMax: 0 };
  const spm = buildPrompt(charEncoder, SPECIAL, { prefix, suffix: 'cd' }, budget, 'spm');
  const psm = buildPrompt(charEncoder, SPECIAL, { prefix, suffix: 'cd' }, budget, 'psm');
  assert.ok(psm.prefixTokens <= 100 - 3 - 25, `PSM prefix ${psm.prefixTokens}`);
  assert.equal(spm.prefixText, prefix);
  assert.equal(spm.ids.length, 3 + 2 + 90);
  // Typing at the cursor keeps the suffix, so the prefix still starts at the same place.
  const typed = buildPrompt(charEncoder, SPECIAL, { prefix: prefix + 'x', suffix: 'cd' }, budget, 'spm');
  assert.equal(typed.prefixText, spm.prefixText + 'x');
});

test('context chunks come first, each after <|file_sep|> with its uri', () => {
  const p = buildPrompt(charEncoder, SPECIAL, { prefix: 'x', suffix: '', contextChunks: [{ uri: 'a.ts', text: 'q' }] },
    { total: 100, suffixMax: 10, contextMax: 40 });
  assert.deepEqual(p.ids, [5, ...enc('a.ts\nq\n'), 2, ...enc('x'), 3, 4]);
  assert.equal(p.contextTokens, 8);
});

test('the whole prompt stays within the budget and keeps the prefix end nearest the cursor', () => {
  const prefix = Array.from({ length: 400 }, (_, i) => `line ${i}\n`).join('') + 'cur';
  const suffix = Array.from({ length: 100 }, (_, i) => `after ${i}\n`).join('');
  const budget = { total: 300, suffixMax: 40, contextMax: 50 };
  const p = buildPrompt(charEncoder, SPECIAL, { prefix, suffix, contextChunks: [{ uri: 'u', text: 'z'.repeat(500) }] }, budget);
  assert.ok(p.ids.length <= 300, `prompt has ${p.ids.length} tokens`);
  assert.ok(p.suffixTokens <= 40 && p.contextTokens <= 50);
  assert.ok(p.prefixText.endsWith('line 399\ncur'));
  assert.ok(p.suffixText.startsWith('after 0\n'));
  assert.ok(p.suffixText.endsWith('\n'), 'suffix is cut at a line end');
  assert.ok(p.truncated);
  const idx = p.ids.indexOf(SPECIAL.fim_middle);
  assert.equal(idx, p.ids.length - 1);
});

test('the prefix cut moves in steps, so typing keeps the start of the prompt', () => {
  const base = Array.from({ length: 3000 }, (_, i) => `x${i % 10}\n`).join('');
  const a = fitPrefix(charEncoder, base, 2000);
  const b = fitPrefix(charEncoder, base + 'y', 2000);
  const c = fitPrefix(charEncoder, base + 'yz', 2000);
  assert.ok(a.ids.length <= 2000 && b.ids.length <= 2000);
  assert.equal(a.text.slice(0, 50), b.text.slice(0, 50));
  assert.equal(b.text.slice(0, 50), c.text.slice(0, 50));
  assert.deepEqual(b.ids.slice(0, a.ids.length), a.ids);
});

test('a prefix window that slides with the cursor keeps the cut where it was in the document (prefixOffset)', () => {
  // The extension sends the last N lines as the prefix: past line N every new line moves the window's start.
  const lines = Array.from({ length: 400 }, (_, i) => `line ${i} ${'x'.repeat(i % 23)}`);
  const budget = { total: 200, suffixMax: 0, contextMax: 0 };
  const cuts = (anchored: boolean) => {
    const starts = new Set<number>();
    for (let cursor = 300; cursor < 340; cursor++) {      // the user types a line and presses Enter, 40 times
      const first = cursor - 100;
      const prefix = lines.slice(first, cursor).join('\n') + '\n';
      const prefixOffset = lines.slice(0, first).join('\n').length + 1;
      const p = buildPrompt(charEncoder, SPECIAL, { prefix, suffix: '', prefixOffset: anchored ? prefixOffset : undefined }, budget, 'spm');
      assert.ok(p.ids.length <= 200);
      starts.add(prefixOffset + prefix.length - p.prefixText.length);   // where the prompt starts in the document
    }
    return starts.size;
  };
  const anchored = cuts(true);
  const sliding = cuts(false);
  // ~40 lines of ~19 characters typed is ~4 grid steps of 197 characters: the start moves about that often.
  assert.ok(anchored <= 6, `anchored: the start moved ${anchored} times`);
  assert.ok(sliding > 2 * anchored, `window-relative: the start moved ${sliding} times`);
});

test('stablePrefixCut with a base counts the grid from the document\'s start', () => {
  const text = 'a\n'.repeat(200);
  assert.equal(stablePrefixCut(text, 100, 64, 0), 128);        // grid 64, 128, … in the text
  assert.equal(stablePrefixCut(text, 100, 64, 10), 118);       // the text starts at 10: grid 54, 118, …
  assert.equal(stablePrefixCut(text, 0, 64, 10), 0);
});

test('stablePrefixCut starts at a line start past a multiple of the step', () => {
  const text = 'a'.repeat(PREFIX_CUT_STEP + 5) + '\n' + 'b'.repeat(3000);
  assert.equal(stablePrefixCut(text, 0), 0);
  assert.equal(stablePrefixCut(text, -4), 0);
  assert.equal(stablePrefixCut(text, 10), PREFIX_CUT_STEP + 6);
  const noNl = 'c'.repeat(5000);
  assert.equal(stablePrefixCut(noNl, 100), PREFIX_CUT_STEP);
});

test('a single 100k-character line is cut to the budget', () => {
  const long = 'k'.repeat(100_000);
  const p = fitPrefix(charEncoder, long, 500);
  assert.ok(p.ids.length <= 500 && p.ids.length > 0);
  const s = fitSuffix(charEncoder, long, 50);
  assert.ok(s.ids.length <= 50 && s.ids.length > 0);
});

test('zero budget and empty parts', () => {
  assert.deepEqual(fitPrefix(charEncoder, 'abc', 0).ids, []);
  assert.deepEqual(fitSuffix(charEncoder, '', 10).ids, []);
  const b = defaultBudget(1024, 64);
  assert.equal(b.total, 959);
  assert.ok(b.suffixMax <= 128 && b.contextMax > 0);
  // A long context (Qwen's 32k) is capped: prefill time grows with every prompt token.
  assert.equal(defaultBudget(32768, 64).total, 1024);
  assert.equal(defaultBudget(32768, 64, 4096).total, 4096);
  assert.deepEqual(defaultBudget(32768, 64), { total: 1024, suffixMax: 64, contextMax: 256 });
  // SPM (suffix first, unchanged by typing on the cursor's line): a quarter for the suffix, at most 256.
  assert.deepEqual(defaultBudget(32768, 64, 1024, 'spm'), { total: 1024, suffixMax: 256, contextMax: 256 });
  assert.equal(defaultBudget(32768, 48, 333, 'spm').suffixMax, 83);
});

test('with the real tokenizer, one more typed character keeps almost the whole prompt as a common prefix', () => {
  const m = readManifest(TINY);
  const tok = CodeTokenizer.load(TINY, m);
  const prefix = 'function add(a, b) {\n  return a + b;\n}\n\nfunction mul(a, b) {\n  return a';
  const suffix = ';\n}\n';
  const budget = defaultBudget(m.architecture.context_length, 32);
  const a = buildPrompt(tok, tok.special, { prefix, suffix }, budget).ids;
  const b = buildPrompt(tok, tok.special, { prefix: prefix + ' ', suffix }, budget).ids;
  let lcp = 0;
  while (lcp < a.length && a[lcp] === b[lcp]) lcp++;
  assert.ok(lcp >= a.length - tok.encode(suffix).length - 3, `common prefix ${lcp} of ${a.length}`);
});

test('split encoding (remembered head + fresh tail) gives exactly the ids of encoding the text whole', () => {
  const tok = CodeTokenizer.load(TINY, readManifest(TINY));
  const files = ['backend/src/engine/engine.ts', 'common/protocol.ts', 'node_modules/vscode-jsonrpc/lib/common/connection.js'];
  for (const f of files) {
    const text = readFileSync(path.join(REPO, f), 'utf8');
    for (const end of [1500, 4000, 4001, 4002, text.length]) {
      const t = text.slice(0, end);
      assert.deepEqual(tok.encode(t), tok.encodeRaw(t), `${f} up to ${end}`);
    }
  }
});
