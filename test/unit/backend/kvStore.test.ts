// The KV cache in two halves: KvCache (the engine's record of the cached tokens) and KvStore (their
// keys and values where the session runs), kept in step by each run's `keep`.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Tensor } from 'onnxruntime-node';
import { KvCache, type PickRecord } from '../../../backend/src/engine/kvCache';
import { KvStore } from '../../../backend/src/engine/kvStore';

const shape = { nLayer: 2, nHead: 2, headDim: 3 };
/** A present tensor whose value at [0, h, p, d] is 100h + 10p + d. */
function present(p: number): Tensor {
  const data = new Float32Array(2 * p * 3);
  for (let h = 0; h < 2; h++) for (let i = 0; i < p; i++) for (let d = 0; d < 3; d++) data[(h * p + i) * 3 + d] = 100 * h + 10 * i + d;
  return new Tensor('float32', data, [1, 2, p, 3]);
}

test('a store starts empty with [1, n_head, 0, head_dim] tensors', () => {
  const s = new KvStore(shape);
  assert.equal(s.length, 0);
  assert.deepEqual(s.key(0).dims, [1, 2, 0, 3]);
});

test('store: update appends; rewind keeps each head\'s first positions', () => {
  const s = new KvStore(shape);
  s.update(3, [present(3), present(3)], [present(3), present(3)]);
  assert.equal(s.length, 3);
  s.rewind(2);
  assert.equal(s.length, 2);
  assert.deepEqual(s.key(1).dims, [1, 2, 2, 3]);
  assert.deepEqual(Array.from(s.value(0).data as Float32Array), Array.from(present(2).data as Float32Array));
  s.rewind(5); // longer than the store: nothing happens
  assert.equal(s.length, 2);
  s.rewind(0);
  assert.equal(s.length, 0);
  assert.deepEqual(s.key(0).dims, [1, 2, 0, 3]);
});

test('store: update refuses presents of the wrong length', () => {
  const s = new KvStore(shape);
  assert.throws(() => s.update(2, [present(3), present(3)], [present(3), present(3)]), /expected 2/);
});

test('a shared store keeps its buffers: appending and rewinding move only the length', () => {
  const s = new KvStore({ ...shape, capacity: 8 });
  const buffer = s.key(0).data;
  assert.deepEqual(s.key(0).dims, [1, 2, 8, 3]);
  s.appendInPlace(5);
  s.rewind(2);
  assert.equal(s.length, 2);
  assert.equal(s.key(0).data, buffer);
  assert.throws(() => s.update(1, [], []), /shared/);
});

test('cache: tokens, common prefix, rewind, room and bytes', () => {
  const c = new KvCache(shape);
  assert.equal(c.bytes, 0);
  c.append([7, 8, 9]);
  assert.deepEqual(c.tokens, [7, 8, 9]);
  assert.equal(c.commonPrefixLength([7, 8, 5, 6]), 2);
  assert.equal(c.commonPrefixLength([7, 8, 9, 10]), 3);
  assert.equal(c.commonPrefixLength([1]), 0);
  c.rewind(2);
  assert.deepEqual(c.tokens, [7, 8]);
  assert.equal(c.bytes, 2 * 2 * 2 * 3 * 2 * 4);
  assert.equal(c.room, Infinity);
  const shared = new KvCache({ ...shape, capacity: 8 });
  shared.append([1, 2, 3]);
  assert.equal(shared.room, 5);
  assert.equal(shared.bytes, 2 * 2 * 2 * 3 * 8 * 4);
});

test('cache: every cache has its own id, and dispose frees what the session registered once', () => {
  const a = new KvCache(shape);
  const b = new KvCache(shape);
  assert.notEqual(a.id, b.id);
  let freed = 0;
  a.onDispose(() => freed++);
  a.append([1]);
  a.dispose();
  a.dispose();
  assert.equal(freed, 1);
  assert.equal(a.length, 0);
});

test('a shared store takes back positions a rewind gave up, only as far as the graph wrote them', () => {
  const s = new KvStore({ ...shape, capacity: 8 });
  s.appendInPlace(6);
  s.rewind(3);
  assert.equal(s.regrow(5), true);
  assert.equal(s.length, 5);
  assert.equal(s.regrow(7), false, 'position 6 was never written');
  assert.equal(s.length, 5);
  const concat = new KvStore(shape);
  concat.update(3, [present(3), present(3)], [present(3), present(3)]);
  concat.rewind(2);
  assert.equal(concat.regrow(3), false, 'a concat store copied its tail away at the rewind');
});

// What a request picked, kept for the next keystroke's request (engine/replay.ts).
const sharedShape = { ...shape, capacity: 64 };
const pick = (id: number, over: Partial<PickRecord> = {}): PickRecord => ({
  id, prob: 0.5, entropy: 1, routing: { loops: [], lambdas: [], experts: [], weights: [] }, heal: null, isStop: false, ...over,
});

test('cache: the picks after a prompt come back for that prompt and for it plus some of them', () => {
  const c = new KvCache(sharedShape);
  c.append([1, 2, 3, 10, 11, 12]);           // prompt 1 2 3, then the picks 10 11 (fed) 12 (fed)
  c.recordPicks(3, [pick(10, { heal: 'x' }), pick(11), pick(12), pick(0, { isStop: true })]);
  assert.deepEqual(c.picksAfter([1, 2, 3]).map((p) => p.id), [10, 11, 12, 0]);
  assert.equal(c.picksAfter([1, 2, 3])[0].heal, 'x');
  assert.deepEqual(c.picksAfter([1, 2, 3, 10, 11]).map((p) => p.id), [12, 0]);
  assert.deepEqual(c.picksAfter([1, 2]), [], 'a prompt that ends before the picks began');
  assert.deepEqual(c.picksAfter([1, 2, 4]), [], 'a prompt the cache does not hold');
  assert.deepEqual(new KvCache(shape).picksAfter([]), [], 'only a shared cache can take positions back');
});

test('cache: a record keeps only picks the cache holds, and one unfed pick at its end', () => {
  const c = new KvCache(sharedShape);
  c.append([1, 2, 3, 10]);
  c.recordPicks(3, [pick(10), pick(11), pick(12)]);      // 11 was picked and not fed: the request ended there
  assert.deepEqual(c.picksAfter([1, 2, 3]).map((p) => p.id), [10, 11]);
  c.recordPicks(3, [pick(99), pick(11)]);                 // not what the cache holds: nothing kept
  assert.deepEqual(c.picksAfter([1, 2, 3]), []);
});

test('cache: a rewind drops the picks after it; a run over the end drops an unfed one; clear drops all', () => {
  const c = new KvCache(sharedShape);
  c.append([1, 2, 3, 10, 11]);
  c.recordPicks(3, [pick(10), pick(11), pick(0, { isStop: true })]);
  c.append([7]);                                           // a run wrote where the stop pick was
  assert.deepEqual(c.picksAfter([1, 2, 3]).map((p) => p.id), [10, 11]);
  c.rewind(4);
  assert.deepEqual(c.picksAfter([1, 2, 3]).map((p) => p.id), [10]);
  c.clear();
  assert.deepEqual(c.picksAfter([]), []);
});

test('cache: the logits after a prompt are kept while the cache holds that prompt', () => {
  const c = new KvCache(shape);
  c.append([1, 2, 3, 4]);
  const row = Float32Array.from([0.5, 2]);
  c.keepPromptLogits(3, row);
  row[0] = 9;                                              // a copy is kept, not the run's buffer
  assert.deepEqual(Array.from(c.promptLogits(3)!), [0.5, 2]);
  assert.equal(c.promptLogits(4), null, 'they predict position 3 only');
  c.rewind(3);
  assert.ok(c.promptLogits(3), 'the tokens before position 3 are still there');
  c.rewind(2);
  assert.equal(c.promptLogits(3), null);
});

test('cache: reclaim takes positions back in a shared cache only', () => {
  const c = new KvCache(sharedShape);
  c.append([1, 2, 3]);
  c.rewind(1);
  c.reclaim([2, 3]);
  assert.deepEqual([...c.tokens], [1, 2, 3]);
  assert.throws(() => new KvCache(shape).reclaim([1]), /not shared/);
});
