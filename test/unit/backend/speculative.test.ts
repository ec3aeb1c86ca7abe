// Speculative decoding (Generator.nextTokens + promptLookup): whatever the draft, the tokens are exactly
// greedy decoding's, and the KV cache holds exactly the tokens fed and kept. Real onnxruntime-node,
// the checked-in tiny model.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { draftHistory, draftSource, historyLookup, keptOf, LOOKUP_START, LookupLength, promptLookup } from '../../../backend/src/engine/drafts';
import { Generator } from '../../../backend/src/engine/generator';
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

test('prompt lookup guesses 2 tokens first, 2 more after a guess kept whole (up to the most), 1 fewer after a miss (down to 1); 1 from the last token alone when no 2-gram repeats', () => {
  const len = new LookupLength(4);
  assert.equal(len.value, LOOKUP_START);
  len.record(2, 2);
  assert.equal(len.value, 4);
  len.record(4, 4);
  assert.equal(len.value, 4);                 // never above the most
  len.record(4, 3);
  assert.equal(len.value, 3);
  len.record(3, 0);
  len.record(2, 0);
  len.record(1, 0);
  assert.equal(len.value, 1);                 // never below 1: a 2-token run costs ~5% more than 1
  len.record(0, 0);                           // nothing guessed: nothing learned
  assert.equal(len.value, 1);
  assert.equal(keptOf([7, 8, 9], [1, 7, 8, 5], 1), 2);
  assert.equal(keptOf([7, 8], [1, 7, 8, 9], 1), 2);
  assert.equal(keptOf([7], [1, 2], 1), 0);

  // Through draftSource: the text repeats "1 2 3 4 5 6 7 8" and generation follows it, so guesses grow.
  const tok = { tokenText: (id: number) => String(id) };
  const prompt = [9, 1, 2, 3, 4, 5, 6, 7, 8, 9, 1, 2];
  const draft = draftSource(tok, prompt, null, []);
  assert.deepEqual(draft([]), [3, 4]);
  assert.deepEqual(draft([3, 4, 5]), [6, 7, 8, 9]);        // the 2-token guess kept whole: 4 now
  assert.deepEqual(draft([3, 4, 5, 0]), []);               // a miss (5 was guessed… 0 picked): no match for "5 0"
  assert.deepEqual(draft([3, 4, 5, 0, 1, 2]), [3, 4, 5]);  // the miss took one off: 3 tokens

  // No 2-gram repeats: one token guessed from the last token alone (7 was followed by 8), unless VFFN_DRAFT_UNIGRAM=0.
  assert.deepEqual(draftSource(tok, prompt, null, [])([0, 7]), [8]);
  process.env.VFFN_DRAFT_UNIGRAM = '0';
  try {
    assert.deepEqual(draftSource(tok, prompt, null, [])([0, 7]), []);
  } finally {
    delete process.env.VFFN_DRAFT_UNIGRAM;
  }

  // Off (VFFN_DRAFT_ADAPT=0): always the most.
  process.env.VFFN_DRAFT_ADAPT = '0';
  try {
    const fixed = new LookupLength(4);
    fixed.record(4, 0);
    assert.equal(fixed.value, 4);
  } finally {
    delete process.env.VFFN_DRAFT_ADAPT;
  }
});

test('history lookup: what followed the first occurrence of the last 4 (down to 2) tokens in the previous prompt and completion', () => {
  // The previous completion [7, 8, 9, 7, 8, 5] after prompt tail [1, 2, 3]: in step with it, not at the later repeat.
  const history = [1, 2, 3, 7, 8, 9, 7, 8, 5];
  assert.deepEqual(historyLookup(history, [0, 1, 2, 3], 16), [7, 8, 9, 7, 8, 5]);
  assert.deepEqual(historyLookup(history, [0, 1, 2, 3, 7, 8], 3), [9, 7, 8]);
  assert.deepEqual(historyLookup(history, [4, 4, 9, 7, 8], 2), [5]);      // the 3-gram 9 7 8 finds the second 7 8
  assert.deepEqual(historyLookup(history, [4, 4, 4, 7], 4), []);          // one token is not enough to trust
  assert.deepEqual(historyLookup([], [1, 2, 3], 4), []);

  // The region starts a few tokens before the new prompt departs from the cache; nothing when it does not depart.
  const cache = { tokens: [10, 11, 12, 13, 14, 15, 16, 20, 21], commonPrefixLength: (ids: readonly number[]) => {
    let i = 0;
    while (i < ids.length && ids[i] === cache.tokens[i]) i++;
    return i;
  } };
  assert.deepEqual(draftHistory(cache, [10, 11, 12, 13, 14, 15, 16, 30]), [13, 14, 15, 16, 20, 21]);
  assert.deepEqual(draftHistory(cache, [...cache.tokens, 40]), []);
  // A prompt that departs more than 8 tokens before its end is another place: no history.
  assert.deepEqual(draftHistory(cache, [10, 11, 12, 13, 14, 15, 16, 30, 31, 32, 33, 34, 35, 36, 37]), [13, 14, 15, 16, 20, 21]);
  assert.deepEqual(draftHistory(cache, [10, 11, 12, 13, 14, 15, 16, 30, 31, 32, 33, 34, 35, 36, 37, 38]), []);
});

test('a draft fed with the prompt: its right tokens come out of the next nextTokens without a run, the cache holds only what was kept', async () => {
  const prompt = tiny.manifest.test_vectors!.prompt_ids;
  const plain = await decode(prompt);
  const session = tiny.session;
  for (const [draft, kept] of [[plain.ids.slice(0, 6), 6], [[...plain.ids.slice(0, 3), (plain.ids[3] + 1) % 50, 4], 3], [[(plain.ids[0] + 1) % 50], 0]] as const) {
    const cache = new KvCache(session.kv);
    const gen = new Generator(session, cache, { temperature: 0, topP: 1, stopIds: [] });
    const pre = await gen.appendTokens(prompt, { draft });
    assert.equal(pre.drafted, draft.length);
    assert.equal(pre.accepted, kept);
    assert.deepEqual(cache.tokens, [...prompt, ...draft.slice(0, kept)]);
    const runsBefore = session.runs;
    try {
      const first = await gen.nextTokens();
      assert.equal(session.runs - runsBefore, kept ? 0 : 1);
      assert.deepEqual(first.map((t) => t.id), plain.ids.slice(0, Math.max(1, kept)));
      const ids = first.map((t) => t.id);
      while (ids.length < N) ids.push(...(await gen.nextTokens()).map((t) => t.id));
      assert.deepEqual(ids.slice(0, N), plain.ids);
    } finally {
      cache.dispose();
    }
  }
});
