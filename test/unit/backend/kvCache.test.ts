import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Tensor } from 'onnxruntime-node';
import { KvCache } from '../../../backend/src/engine/kvCache';

const shape = { nLayer: 2, nHead: 2, headDim: 3 };
/** A present tensor whose value at [0, h, p, d] is 100h + 10p + d. */
function present(p: number): Tensor {
  const data = new Float32Array(2 * p * 3);
  for (let h = 0; h < 2; h++) for (let i = 0; i < p; i++) for (let d = 0; d < 3; d++) data[(h * p + i) * 3 + d] = 100 * h + 10 * i + d;
  return new Tensor('float32', data, [1, 2, p, 3]);
}

test('starts empty with [1, n_head, 0, head_dim] tensors', () => {
  const c = new KvCache(shape);
  assert.equal(c.length, 0);
  assert.deepEqual(c.key(0).dims, [1, 2, 0, 3]);
  assert.equal(c.bytes, 0);
});

test('update appends tokens; common prefix; rewind keeps each head\'s first positions', () => {
  const c = new KvCache(shape);
  c.update([7, 8, 9], [present(3), present(3)], [present(3), present(3)]);
  assert.deepEqual(c.tokens, [7, 8, 9]);
  assert.equal(c.commonPrefixLength([7, 8, 5, 6]), 2);
  assert.equal(c.commonPrefixLength([7, 8, 9, 10]), 3);
  assert.equal(c.commonPrefixLength([1]), 0);
  c.rewind(2);
  assert.deepEqual(c.tokens, [7, 8]);
  assert.deepEqual(c.key(1).dims, [1, 2, 2, 3]);
  assert.deepEqual(Array.from(c.value(0).data as Float32Array), Array.from(present(2).data as Float32Array));
  assert.equal(c.bytes, 2 * 2 * 2 * 3 * 2 * 4);
  c.rewind(5); // longer than the cache: nothing happens
  assert.equal(c.length, 2);
  c.rewind(0);
  assert.equal(c.length, 0);
  assert.deepEqual(c.key(0).dims, [1, 2, 0, 3]);
});

test('update refuses presents of the wrong length', () => {
  const c = new KvCache(shape);
  assert.throws(() => c.update([1, 2], [present(3), present(3)], [present(3), present(3)]), /expected 2/);
});
