// The KV cache in two halves: KvCache (the engine's record of the cached tokens) and KvStore (their
// keys and values where the session runs), kept in step by each run's `keep`.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Tensor } from 'onnxruntime-node';
import { KvCache } from '../../../backend/src/engine/kvCache';
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
