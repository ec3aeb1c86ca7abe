// A shared KV cache (graph.kv "shared": fixed buffers that GroupQueryAttention appends to in place) on
// the real default model: logits after incremental steps, a rewind and speculative decoding equal a
// one-shot run of the same tokens, and nothing is copied to get there. Skipped without the model.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import { InferenceSession } from 'onnxruntime-node';
import { promptLookup } from '../../../backend/src/engine/drafts';
import { EmbeddingRows } from '../../../backend/src/engine/embeddingRows';
import { Generator } from '../../../backend/src/engine/generator';
import { GraphRunner } from '../../../backend/src/engine/graphRunner';
import { KvCache } from '../../../backend/src/engine/kvCache';
import { loadModel, LoadedModel, releaseModel } from '../../../backend/src/engine/loadedModel';
import { sessionOptions } from '../../../backend/src/engine/providers';
import { MODELS } from './helpers';

const DIR = path.resolve(process.env.VFFN_QWEN_MODEL || path.join(MODELS, 'qwen2.5-coder-0.5b-vffn'));
const skip = existsSync(path.join(DIR, 'manifest.json')) ? false : `no real model at ${DIR} (built by scripts/setup.sh)`;

let m: LoadedModel;
before(async () => {
  if (skip) return;
  process.env.VFFN_MAX_PROMPT_TOKENS ??= '1024';   // no speed probe: this test is about the cache
  m = await loadModel('qwen', DIR, 'cpu', 0);
});
after(async () => {
  if (m) await releaseModel(m);
});

const TEXT = 'def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n\n\nprint(fibonacci(10))\n';

/** Logits of the last position after running `ids` from an empty cache in one step. */
async function oneShot(ids: number[]): Promise<Float32Array> {
  const cache = new KvCache(m.session.kv);
  const r = await m.session.step(ids, cache, 1);
  cache.dispose();
  return r.logits;
}

function maxDiff(a: Float32Array, b: Float32Array): number {
  let d = 0;
  for (let i = 0; i < a.length; i++) if (a[i] > -1e8) d = Math.max(d, Math.abs(a[i] - b[i]));
  return d;
}

test('the default model uses a shared cache of context_length positions, bound in place', { skip }, async () => {
  assert.equal(m.manifest.graph.kv, 'shared');
  assert.equal(m.session.kv.capacity, m.manifest.architecture.context_length);
  // A GraphRunner in this thread (the engine's runs in the session thread) to look at its buffers.
  const session = await InferenceSession.create(path.join(DIR, m.manifest.graph.file), sessionOptions('cpu', 0));
  // The default model's graph takes embedding rows, read from its file (embeddingRows.ts).
  const rows = EmbeddingRows.forModel(DIR, m.manifest);
  assert.ok(rows, 'the default model reads its embedding rows from a file');
  const runner = new GraphRunner(session, m.manifest, rows);
  try {
    const ids = m.tokenizer.encode(TEXT);
    await runner.run({ ids: ids.slice(0, -1), numLogits: 1, cacheId: 1, keep: 0 });
    const store = runner.storeOf(1)!;
    const buffer = store.key(0).data;
    assert.ok((buffer as Float32Array).some((x) => x !== 0));
    const last = await runner.run({ ids: ids.slice(-1), numLogits: 1, cacheId: 1, keep: ids.length - 1 });
    assert.equal(store.key(0).data, buffer, 'the same buffer, written in place');
    assert.equal(store.length, ids.length);
    // The session thread runs the same graph on the same numbers.
    const cache = new KvCache(m.session.kv);
    await m.session.step(ids.slice(0, -1), cache, 1);
    const threaded = await m.session.step(ids.slice(-1), cache, 1);
    cache.dispose();
    assert.equal(maxDiff(last.logits.data, threaded.logits), 0);
  } finally {
    await runner.release();
  }
});

test('chunked steps, a rewind and a re-append give the one-shot logits', { skip }, async () => {
  const ids = m.tokenizer.encode(TEXT);
  const cache = new KvCache(m.session.kv);
  await m.session.step(ids.slice(0, 10), cache, 1);
  await m.session.step(ids.slice(10, 30), cache, 1);
  await m.session.step([7, 7, 7, 7], cache, 1);       // a wrong continuation ...
  cache.rewind(30);                                     // ... taken back: only the length moves
  const r = await m.session.step(ids.slice(30), cache, 1);
  assert.equal(cache.length, ids.length);
  assert.ok(maxDiff(r.logits, await oneShot(ids)) < 1e-3);
  cache.dispose();
});

// replay.ts takes back positions a rewind gave up: their keys and values must still be in the buffer,
// and what runs after them must see them. Compared with the same runs without the rewind: exactly equal
// (the int8 kernels round one-token runs differently from a one-shot run, so that is the reference).
test('positions taken back after a rewind give exactly the logits they gave before it', { skip }, async () => {
  const ids = m.tokenizer.encode(TEXT);
  const steps = async (takeBack: boolean) => {
    const cache = new KvCache(m.session.kv);
    await m.session.step(ids.slice(0, 30), cache, 1);
    await m.session.step(ids.slice(30, -1), cache, 1);   // as decoding wrote them
    if (takeBack) {
      cache.rewind(30);                                  // a new request's prompt ends here ...
      cache.reclaim(ids.slice(30, -1));                  // ... and its picks are the ones already there
    }
    const r = await m.session.step(ids.slice(-1), cache, 1);
    assert.equal(cache.length, ids.length);
    cache.dispose();
    return r.logits;
  };
  assert.equal(maxDiff(await steps(true), await steps(false)), 0);
  // A run that claims more positions than the store ever wrote is refused.
  const fresh = new KvCache(m.session.kv);
  await m.session.step(ids.slice(0, 5), fresh, 1);
  fresh.reclaim([1, 2, 3]);
  await assert.rejects(m.session.step([4], fresh, 1), /8 positions expected, 5 stored/);
  fresh.dispose();
});

test('speculative decoding on the shared cache: same tokens as plain greedy, fewer runs', { skip }, async () => {
  const prompt = m.tokenizer.encode(TEXT + TEXT.slice(0, 40));   // the text again: prompt lookup can guess
  const run = async (draft: boolean) => {
    const cache = new KvCache(m.session.kv);
    const gen = new Generator(m.session, cache, { temperature: 0, topP: 1, stopIds: [] });
    await gen.appendTokens(prompt);
    const ids: number[] = [];
    let runs = 0;
    while (ids.length < 16) {
      const batch = await gen.nextTokens(draft ? (g) => promptLookup([...prompt, ...g], 4) : undefined, draft ? 4 : 0);
      ids.push(...batch.map((t) => t.id));
      runs++;
    }
    cache.dispose();
    return { ids: ids.slice(0, 16), runs };
  };
  const plain = await run(false);
  const spec = await run(true);
  assert.deepEqual(spec.ids, plain.ids);
  assert.ok(spec.runs < plain.runs, `speculative ${spec.runs} runs vs plain ${plain.runs}`);
});

test('a full cache is refused with a clear error', { skip }, async () => {
  const cache = new KvCache(m.session.kv);
  const cap = m.session.kv.capacity!;
  await assert.rejects(m.session.step(new Array(cap + 1).fill(100), cache, 1), /KV cache full/);
  cache.dispose();
});
