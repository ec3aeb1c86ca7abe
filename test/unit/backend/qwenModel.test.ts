// The real default model (Qwen2.5-Coder-0.5B upcycled, built by scripts/setup.sh into
// models/qwen2.5-coder-0.5b-vffn; VFFN_QWEN_MODEL=/path/to/folder overrides): a fixed FIM prompt
// completes as it should, through the whole engine (prompt, GQA cache, stops, post-processing).
// Skipped when the folder is not there.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import { Engine } from '../../../backend/src/engine/engine';
import { MODELS } from './helpers';

const DIR = path.resolve(process.env.VFFN_QWEN_MODEL || path.join(MODELS, 'qwen2.5-coder-0.5b-vffn'));
const skip = existsSync(path.join(DIR, 'manifest.json'))
  ? false
  : `no real model at ${DIR} (built by scripts/setup.sh; VFFN_QWEN_MODEL=/path/to/model-folder overrides)`;

let engine: Engine;
before(async () => {
  if (skip) return;
  engine = new Engine({ modelDirs: [path.dirname(DIR)], provider: 'cpu', threads: 0 });
  const r = await engine.start(path.basename(DIR));
  assert.ok(r.ok && r.active === path.basename(DIR), r.error);
});
after(async () => {
  await engine?.dispose();
});

const complete = (prefix: string, suffix: string, maxTokens = 32) =>
  engine.complete({ requestId: 'qwen', languageId: 'python', prefix, suffix, maxTokens, maxTimeMs: 60_000 });

test('def add(a, b): return ▮ completes with a + b', { skip }, async () => {
  const r = await complete('def add(a, b):\n    return ', '\n\nprint(add(1, 2))\n');
  assert.equal(r.error, undefined);
  assert.equal(r.completion, 'a + b', JSON.stringify({ completion: r.completion, stop: r.stopReason, trimmed: r.trimmed }));
  // Upcycled routing reaches the result: a share of FFN units per layer for every token.
  const n = engine.activeModel!.manifest.architecture.n_layer;
  assert.ok(r.tokens.every((t) => t.routing.ffnShare?.length === n && t.computeVsDense > 0));
  assert.ok(r.compute.meanFfnShare !== undefined && r.compute.meanFfnShare > 0 && r.compute.meanFfnShare <= 1);
});

// SPM prompts end with the prefix, so a cursor in the middle of a word, or after a space the model
// would have written as part of the next token, is healed (tokenHealing.ts): the model spells the
// prefix's last token again and the completion is what comes after the cursor.
test('a cursor inside a word or after its space completes from the cursor (token healing)', { skip }, async () => {
  const suffix = '\n\nprint(add(1, 2))\n';
  for (const [prefix, expected] of [
    ['def add(a, b):\n    ret', 'urn a + b'],
    ['def add(a, b):\n    return', ' a + b'],
    ['def add(a, b):\n    ', 'return a + b'],
  ]) {
    const r = await complete(prefix, suffix);
    assert.equal(r.error, undefined);
    assert.equal(r.completion, expected, JSON.stringify({ prefix, completion: r.completion, stop: r.stopReason, trimmed: r.trimmed }));
  }
});

/** The graph runs one request took. */
async function counted<T>(request: () => Promise<T>): Promise<{ value: T; runs: number }> {
  const before = engine.activeModel!.session.runs;
  const value = await request();
  return { value, runs: engine.activeModel!.session.runs - before };
}

const FIB_PREFIX = 'def fibonacci(n):\n    if n < 2:\n        return n\n    return ';
const FIB_SUFFIX = '\n\n\nprint(fibonacci(10))\n';

// Typing through the ghost text: the prompt is the previous one (token healing takes the typed
// character's token back out) or it plus some of the previous picks, so the picks come back from the
// cache's record (replay.ts) with no model run, and they are what the model picks with the reuse off.
test('typing through the completion: the rest comes back with no model run, as the model picks it', { skip }, async () => {
  const prefix = FIB_PREFIX;
  const suffix = FIB_SUFFIX;
  try {
    const cold = await complete(prefix, suffix);
    assert.match(cold.completion, /^fibonacci\(n ?- ?1\) \+ fibonacci\(n ?- ?2\)/);
    const one = await counted(() => complete(prefix + cold.completion[0], suffix));
    assert.equal(one.value.completion, cold.completion.slice(1));
    assert.equal(one.runs, 0, 'the first pick comes from the logits the previous prompt run gave, the rest from the record');
    assert.equal(one.value.timings.replayedTokens, one.value.tokens.length - 1);
    // Typed on past the first token: one run (its last token, for the logits), then the record again.
    const k = cold.completion.indexOf('(') + 1;
    const more = await counted(() => complete(prefix + cold.completion.slice(0, k), suffix));
    assert.equal(more.value.completion, cold.completion.slice(k));
    assert.equal(more.runs, 1);
    assert.ok(more.value.timings.replayedTokens > 4, JSON.stringify(more.value.timings));

    process.env.VFFN_REUSE_PICKS = '0';
    await complete(prefix, suffix);
    const plainOne = await counted(() => complete(prefix + cold.completion[0], suffix));
    assert.equal(plainOne.value.completion, one.value.completion);
    assert.deepEqual(plainOne.value.tokens.map((t) => t.id), one.value.tokens.map((t) => t.id));
    assert.equal(plainOne.value.timings.replayedTokens, 0);
    assert.ok(plainOne.runs > 0);
    await complete(prefix, suffix);
    assert.equal((await complete(prefix + cold.completion.slice(0, k), suffix)).completion, more.value.completion);
  } finally {
    delete process.env.VFFN_REUSE_PICKS;
  }
});

// Where the picks cannot be reused (the typed character's tokens depart from them) the previous
// completion is still the best draft (drafts.ts historyLookup), checked in the prompt's own run.
// With the reuse off (VFFN_REUSE_PICKS=0) the type-through case shows the drafts alone.
test('typing the completion\'s first character: the rest comes back in fewer runs, exactly as without drafts', { skip }, async () => {
  const prefix = FIB_PREFIX;
  const suffix = FIB_SUFFIX;
  process.env.VFFN_REUSE_PICKS = '0';
  try {
    const cold = await complete(prefix, suffix);
    assert.ok(cold.completion.length > 4, cold.completion);
    const typed = prefix + cold.completion[0];
    const { value: warm, runs: warmRuns } = await counted(() => complete(typed, suffix));
    assert.equal(warm.completion, cold.completion.slice(1));
    // Drafts cover the previous completion; the tokens after it (the newline and indentation the stop
    // rules read) are generated one run each: at least three tokens a run, where without drafts it is one.
    assert.ok(warmRuns * 3 <= warm.tokens.length, `${warmRuns} runs for ${warm.tokens.length} tokens`);
    // A character the previous completion did not have: its draft is not used, and the answer is the model's.
    await complete(prefix, suffix);
    const other = await complete(prefix + 'x', suffix);

    process.env.VFFN_HISTORY_DRAFT_TOKENS = '0';
    await complete(prefix, suffix);
    const { value: plain, runs } = await counted(() => complete(typed, suffix));
    assert.equal(plain.completion, warm.completion);
    assert.ok(runs > warmRuns, `${runs} runs without history drafts, ${warmRuns} with`);
    await complete(prefix, suffix);
    assert.equal((await complete(prefix + 'x', suffix)).completion, other.completion);
  } finally {
    delete process.env.VFFN_HISTORY_DRAFT_TOKENS;
    delete process.env.VFFN_REUSE_PICKS;
  }
});

test('a prefill at the resting cursor: the first completion after a typed character runs only its last tokens, and matches a cold one', { skip }, async () => {
  const prefix = 'import math\n\n\ndef circle_area(radius):\n    return math.';
  const suffix = '\n\n\ndef circle_perimeter(radius):\n    return 2 * math.pi * radius\n';
  const place = { requestId: 'rest', languageId: 'python', prefix: prefix.slice(0, -1), suffix, maxTokens: 32, maxTimeMs: 60_000 };
  engine.activeModel!.kv.clear();
  const p = await engine.prefill(place);
  assert.equal(p.state, 'read', JSON.stringify(p));
  const warm = await complete(prefix, suffix);
  // SPM with token healing: the typed '.' changes the prefix's last token or two.
  assert.ok(warm.timings.promptTokens - warm.timings.reusedTokens <= 3, JSON.stringify(warm.timings));
  engine.activeModel!.kv.clear();
  const cold = await complete(prefix, suffix);
  assert.equal(cold.timings.reusedTokens, 0);
  assert.equal(warm.completion, cold.completion);
  assert.match(warm.completion, /^pi \* radius/);
});

// A multi-line completion's first line is handed out as soon as it is generated (the extension shows
// it while the rest comes); it is the whole completion's first line, cleaned by the same rules.
test('a multi-line completion sends its first line first: the constructor\'s first assignment, then both', { skip }, async () => {
  const parts: { completion: string; elapsedMs: number }[] = [];
  const r = await engine.complete(
    { requestId: 'lines', languageId: 'python', prefix: 'class Point:\n    def __init__(self, x, y):\n', suffix: '\n', maxTokens: 32, maxTimeMs: 60_000 },
    undefined, (p) => parts.push(p));
  assert.equal(r.completion, '        self.x = x\n        self.y = y', JSON.stringify({ completion: r.completion, stop: r.stopReason }));
  assert.deepEqual(parts.map((p) => p.completion), ['        self.x = x']);
  assert.ok(parts[0].elapsedMs < r.timings.totalMs);
  // Code after the cursor makes it a single line: no partial.
  const single: unknown[] = [];
  await engine.complete({ requestId: 'one', languageId: 'python', prefix: 'def add(a, b):\n    return ', suffix: ' # sum\n', maxTokens: 32, maxTimeMs: 60_000 },
    undefined, (p) => single.push(p));
  assert.deepEqual(single, []);
});
