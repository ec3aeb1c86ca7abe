// Integration through real onnxruntime-node with the checked-in tiny models.
import assert from 'node:assert/strict';
import { existsSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import type { CompleteParams } from '../../../common/protocol';
import { Engine } from '../../../backend/src/engine/engine';
import { Generator } from '../../../backend/src/engine/generator';
import { KvCache } from '../../../backend/src/engine/kvCache';
import { loadModel, LoadedModel, releaseModel } from '../../../backend/src/engine/loadedModel';
import { copyModel, MODELS, TINY } from './helpers';

const DENSE = path.join(MODELS, 'tiny-test-dense');

async function greedyIds(m: LoadedModel, prompt: number[], n: number, split?: number) {
  const cache = new KvCache(m.session.kv);
  const gen = new Generator(m.session, cache, { temperature: 0, topP: 1, stopIds: [] });
  if (split) await gen.appendTokens(prompt.slice(0, split));
  const pre = await gen.appendTokens(prompt);
  const out = [];
  for (let i = 0; i < n; i++) out.push(await gen.nextToken());
  cache.dispose();
  return { ids: out.map((t) => t.id), tokens: out, prefill: pre };
}

let tiny: LoadedModel;
before(async () => {
  tiny = await loadModel('tiny-test', TINY, 'cpu', 1);
});
after(async () => {
  await releaseModel(tiny);
});

test('greedy decode of the pinned prompt reproduces the pinned ids (tiny-test)', async () => {
  const tv = tiny.manifest.test_vectors!;
  const r = await greedyIds(tiny, tv.prompt_ids, tv.greedy_ids.length);
  assert.deepEqual(r.ids, tv.greedy_ids);
});

test('routing of prompt and generated positions matches the pinned routing', async (t) => {
  const tv = tiny.manifest.test_vectors as unknown as { prompt_ids: number[]; greedy_ids: number[]; routing_loops?: number[][]; routing_experts?: number[][][] };
  if (!tv.routing_loops) return t.skip('manifest has no routing test vectors');
  const r = await greedyIds(tiny, tv.prompt_ids, tv.greedy_ids.length);
  const routing = [...r.prefill.routing, ...r.tokens.slice(0, -1).map((x) => x.routing)];
  const loops = tv.routing_loops.map((_, layer) => routing.map((x) => x.loops[layer]));
  assert.deepEqual(loops, tv.routing_loops);
  if (tv.routing_experts) {
    const experts = tv.routing_experts.map((_, layer) => routing.map((x) => x.experts[layer]));
    assert.deepEqual(experts, tv.routing_experts);
  }
});

test('pinned ids for the dense baseline too', { skip: !existsSync(DENSE) }, async () => {
  const dense = await loadModel('tiny-test-dense', DENSE, 'cpu', 1);
  const tv = dense.manifest.test_vectors!;
  assert.deepEqual((await greedyIds(dense, tv.prompt_ids, tv.greedy_ids.length)).ids, tv.greedy_ids);
  await releaseModel(dense);
});

test('prefill in two parts (KV-cache reuse) gives the same tokens as one cold prefill', async () => {
  const tv = tiny.manifest.test_vectors!;
  const r = await greedyIds(tiny, tv.prompt_ids, tv.greedy_ids.length, 20);
  assert.equal(r.prefill.reused, 20);
  assert.deepEqual(r.ids, tv.greedy_ids);
});

function engine(dirs = [MODELS]) {
  return new Engine({ modelDirs: dirs, provider: 'cpu', threads: 1 });
}
const req = (over: Partial<CompleteParams> = {}): CompleteParams => ({
  requestId: 'r', languageId: 'typescript', prefix: 'function add(a: number, b: number) {\n  return a', suffix: ';\n}\n', maxTokens: 12, ...over,
});

test('engine: warm request (one more typed character) reuses the cache and matches a cold run', async () => {
  const e = engine();
  assert.equal((await e.start('tiny-test')).ok, true);
  const cold = await e.complete(req());
  assert.equal(cold.error, undefined);
  assert.equal(cold.timings.reusedTokens, 0);
  assert.ok(cold.tokens.length > 0);
  assert.ok(cold.tokens.every((t) => t.routing.loops.length === 2 && t.prob > 0 && t.prob <= 1));
  // The same prompt again: all of it is cached, and so are the logits its last run gave: nothing runs for it.
  const same = await e.complete(req());
  assert.equal(same.timings.reusedTokens, same.timings.promptTokens);
  assert.deepEqual(same.tokens.map((t) => t.id), cold.tokens.map((t) => t.id));
  const warm = await e.complete(req({ prefix: req().prefix + ' ' }));
  assert.ok(warm.timings.reusedTokens > warm.timings.promptTokens / 2, JSON.stringify(warm.timings));
  e.activeModel!.kv.clear();
  const coldTyped = await e.complete(req({ prefix: req().prefix + ' ' }));
  assert.deepEqual(warm.tokens.map((t) => t.id), coldTyped.tokens.map((t) => t.id));
  assert.equal(warm.completion, coldTyped.completion);
  await e.dispose();
});

test('engine: newest request first; an older one is superseded, a cancelled one ends', async () => {
  const e = engine();
  await e.start('tiny-test');
  const [a, b] = await Promise.all([e.complete(req({ requestId: 'a' })), e.complete(req({ requestId: 'b' }))]);
  assert.equal(a.stopReason, 'superseded');
  assert.equal(a.completion, '');
  assert.notEqual(b.stopReason, 'superseded');
  const c = await e.complete(req({ requestId: 'c' }), { cancelled: true });
  assert.equal(c.stopReason, 'cancelled');
  // Cancelled while running: stops at the next step.
  const sig = { cancelled: false };
  const p = e.complete(req({ requestId: 'd', maxTokens: 200 }), sig);
  setImmediate(() => { sig.cancelled = true; });
  assert.equal((await p).stopReason, 'cancelled');
  const s = e.stats().perModel['tiny-test'];
  assert.equal(s.cancelled, 3);
  await e.dispose();
});

test('engine: bad input gives a clear error or an empty result, and the engine keeps serving', async () => {
  const e = engine();
  await e.start('tiny-test');
  const big = await e.complete(req({ prefix: 'x'.repeat(11 * 1024 * 1024) }));
  assert.equal(big.stopReason, 'error');
  assert.match(big.error!, /too large/);
  const bin = await e.complete(req({ prefix: 'ab\0cd' }));
  assert.match(bin.error!, /binary/);
  const line = await e.complete(req({ prefix: 'y'.repeat(100_001) }));
  assert.match(line.error!, /line is 10000\d characters long \(limit 100000\)/);
  const empty = await e.complete(req({ prefix: '', suffix: '  ' }));
  assert.equal(empty.stopReason, 'empty_input');
  const surrogate = await e.complete(req({ prefix: 'const s = "\uD800', suffix: '\uDC00";' }));
  assert.equal(surrogate.error, undefined);
  const notString = await e.complete(req({ prefix: 42 as unknown as string }));
  assert.equal(notString.stopReason, 'error');
  const ok = await e.complete(req());
  assert.equal(ok.error, undefined);
  assert.equal(e.stats().perModel['tiny-test'].errors, 4);
  await e.dispose();
});

test('engine: a corrupt model fails to switch with the file named; the old model keeps serving', async () => {
  const c = copyModel(TINY, 'broken-copy');
  truncateSync(path.join(c.dir, 'model.onnx'), 5000);
  const e = engine([MODELS, c.modelsDir]);
  await e.start('tiny-test');
  const r = await e.switchModel('broken-copy');
  assert.equal(r.ok, false);
  assert.equal(r.active, 'tiny-test');
  assert.match(r.error!, /model\.onnx is truncated/);
  assert.equal((await e.complete(req())).error, undefined);
  const info = e.listModels().models.find((m) => m.name === 'broken-copy');
  assert.match(info?.loadError ?? '', /truncated/);
  assert.equal((await e.switchModel('no-such-model')).ok, false);
  await e.dispose();
  c.cleanup();
});

test('engine: hot swap to the dense baseline, per-model requests, analyze, prompt tokens, seeded sampling', { skip: !existsSync(DENSE) }, async () => {
  const e = engine();
  await e.start('tiny-test');
  const switching = e.switchModel('tiny-test-dense');
  const during = await e.complete(req({ requestId: 'during' }));
  assert.equal(during.model, 'tiny-test', 'the old model serves while the new one loads');
  const sw = await switching;
  assert.equal(sw.ok, true);
  assert.equal(e.listModels().active, 'tiny-test-dense');
  const d = await e.complete(req());
  assert.equal(d.model, 'tiny-test-dense');
  assert.ok(d.tokens.every((t) => t.computeVsDense === 1 && t.computeVsMax === 0.25));
  const v = await e.complete(req({ model: 'tiny-test', includePromptTokens: true }));
  assert.equal(v.model, 'tiny-test');
  assert.equal(v.promptTokens?.length, v.timings.promptTokens);
  const an = await e.analyze({ text: 'let x = 1;\n', languageId: 'typescript' });
  assert.ok(an.tokens.length > 3);
  assert.equal(an.tokens[0].prob, 1);
  const s1 = await e.complete(req({ temperature: 0.8, seed: 5, requestId: 's1' }));
  const s2 = await e.complete(req({ temperature: 0.8, seed: 5, requestId: 's2' }));
  assert.deepEqual(s1.tokens.map((t) => t.id), s2.tokens.map((t) => t.id));
  assert.equal(e.providerStatus().active, 'cpu');
  await e.dispose();
});

test('engine: the manifest\'s fim.order and generation defaults are honoured', async () => {
  const c = copyModel(TINY, 'tiny-spm');
  const file = path.join(c.dir, 'manifest.json');
  const m = JSON.parse(readFileSync(file, 'utf8'));
  m.fim = { order: 'spm' };
  m.generation = { ...m.generation, max_new_tokens: 5, temperature: 0.8, top_p: 0.9 };
  writeFileSync(file, JSON.stringify(m));
  const e = engine([c.modelsDir]);
  try {
    assert.equal((await e.start('tiny-spm')).ok, true);
    const sp = m.tokenizer.special_ids;
    const r = await e.complete({ ...req({ includePromptTokens: true, seed: 3 }), maxTokens: undefined });
    const ids = r.promptTokens!.map((t) => t.id);
    const pre = ids.indexOf(sp.fim_prefix);
    assert.equal(ids[pre + 1], sp.fim_suffix, 'SPM: the suffix right after <|fim_prefix|><|fim_suffix|>');
    assert.ok(ids.indexOf(sp.fim_middle) < ids.length - 1, 'SPM: the prefix follows <|fim_middle|>');
    // SPM heals the prefix's last token (tokenHealing.ts): the model picks it again, one token more.
    assert.ok(r.tokens.length <= 5 + 1, 'generation.max_new_tokens is the default');
    const sampled = await e.complete({ ...req({ seed: 3, temperature: 0.8, topP: 0.9 }), maxTokens: undefined });
    assert.deepEqual(r.tokens.map((t) => t.id), sampled.tokens.map((t) => t.id), 'generation.temperature/top_p are the defaults');
  } finally {
    await e.dispose();
    c.cleanup();
  }
});
