// Speculative decoding (Generator.nextTokens + promptLookup): whatever the draft, the tokens are exactly
// greedy decoding's, and the KV cache holds exactly the tokens fed and kept. Real onnxruntime-node,
// the checked-in tiny model.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Generator, promptLookup } from '../../../backend/src/engine/generator';
import { KvCache } from '../../../backend/src/engine/kvCache';
import { loadModel, LoadedModel, releaseModel } from '../../../backend/src/engine/loadedModel';
import { TINY } from './helpers';

let tiny: LoadedModel;
before(async () => {
  tiny = await loadModel('tiny-test', TINY, 'cpu', 1);
});
after(async () => {
  await releaseModel(tiny);
});

const N = 24;

async function decode(prompt: number[], draft?: (generated: readonly number[]) => readonly number[], maxDraft = 0) {
  const cache = new KvCache(tiny.session.kv);
  const gen = new Generator(tiny.session, cache, { temperature: 0, topP: 1, stopIds: [] });
  await gen.appendTokens(prompt);
  const ids: number[] = [];
  let runs = 0;
  while (ids.length < N) {
    const batch = await gen.nextTokens(draft, maxDraft);
    runs++;
    ids.push(...batch.map((t) => t.id));
    assert.ok(batch.every((t) => t.routing.loops.length === tiny.manifest.architecture.n_layer));
  }
  const cached = [...cache.tokens];
  cache.dispose();
  return { ids: ids.slice(0, N), all: ids, runs, cached };
}

test('prompt lookup: the tokens after the latest earlier occurrence of the last 3 (else 2) tokens', () => {
  assert.deepEqual(promptLookup([1, 2, 3, 9, 9, 1, 2, 3, 7, 8, 1, 2, 3], 4), [7, 8, 1, 2]);
  assert.deepEqual(promptLookup([5, 6, 4, 6, 1, 5, 6], 2), [4, 6]);      // no 3-gram match: the 2-gram's
  assert.deepEqual(promptLookup([1, 2, 3, 4], 3), []);
  assert.deepEqual(promptLookup([1, 2, 1, 2], 8), [1, 2]);               // stops at the end of the context
});

test('drafts never change greedy output; right drafts save runs, wrong ones are undone in the cache', async () => {
  const prompt = tiny.manifest.test_vectors!.prompt_ids;
  const plain = await decode(prompt);
  assert.equal(plain.runs, N);

  // The true continuation as draft: all accepted, 5 tokens a run.
  const oracle = await decode(prompt, (g) => plain.ids.slice(g.length, g.length + 4), 4);
  assert.deepEqual(oracle.ids, plain.ids);
  assert.ok(oracle.runs <= Math.ceil(N / 5), `expected ≤ ${Math.ceil(N / 5)} runs, got ${oracle.runs}`);

  // A wrong draft: every guess rejected, one token a run, and the cache never keeps a rejected guess.
  const wrong = await decode(prompt, (g) => [(plain.ids[g.length] ?? 0) + 1, 3, 3], 3);
  assert.deepEqual(wrong.ids, plain.ids);
  assert.equal(wrong.runs, N);
  assert.deepEqual(wrong.cached, [...prompt, ...plain.ids.slice(0, N)]);

  // Prompt lookup over prompt + generated, and a half-right draft.
  const lookup = await decode(prompt, (g) => promptLookup([...prompt, ...g], 4), 4);
  assert.deepEqual(lookup.ids, plain.ids);
  const half = await decode(prompt, (g) => [plain.ids[g.length] ?? 0, 7, 7], 3);
  assert.deepEqual(half.ids, plain.ids);
  assert.deepEqual(half.cached, [...prompt, ...half.all]);
});
