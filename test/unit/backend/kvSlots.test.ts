import assert from 'node:assert/strict';
import { test } from 'node:test';
import { KvSlots } from '../../../backend/src/engine/kvSlots';

const shape = { nLayer: 1, nHead: 1, headDim: 2 };
const fill = (slots: KvSlots, ids: number[]) => {
  const c = slots.pick(ids);
  c.rewind(c.commonPrefixLength(ids));
  c.append(ids.slice(c.length));
  return c;
};

test('kv slots: a prompt runs on the slot holding most of it; a new place takes the slot used longest ago', () => {
  const slots = new KvSlots(shape, 2);
  const a = fill(slots, [1, 2, 3, 4, 5, 6]);
  const b = fill(slots, [1, 9, 9, 9, 9, 9]);
  assert.notEqual(a, b, 'a place sharing less than half of its prompt does not overwrite the other');
  assert.equal(slots.pick([1, 2, 3, 4, 5, 6, 7]), a, 'typing on at a');
  assert.equal(slots.pick([1, 9, 9, 9, 9]), b);
  // b was used last, so a third place takes a's slot.
  const c = fill(slots, [7, 7, 7, 7]);
  assert.equal(c, a);
  assert.equal(slots.pick([1, 9, 9, 9, 9, 9, 2]), b);
  assert.equal(slots.spare(), c, 'the slot used longest ago');
});

test('kv slots: one slot behaves as a single cache; clear empties all', () => {
  const one = new KvSlots(shape, 1);
  const x = fill(one, [1, 2, 3]);
  assert.equal(fill(one, [4, 5, 6]), x);
  const two = new KvSlots(shape, 2);
  fill(two, [1, 2]);
  fill(two, [3, 4]);
  two.clear();
  assert.deepEqual(two.all.map((c) => c.length), [0, 0]);
});
