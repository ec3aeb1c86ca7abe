import assert from 'node:assert/strict';
import { test } from 'node:test';
import { argmax, banTokens, sampleTopP, seededRng } from '../../../backend/src/engine/generator';

test('seeded rng is reproducible and in [0, 1)', () => {
  const a = seededRng(7);
  const b = seededRng(7);
  const xs = Array.from({ length: 100 }, () => a.next());
  assert.deepEqual(xs, Array.from({ length: 100 }, () => b.next()));
  assert.ok(xs.every((x) => x >= 0 && x < 1));
  assert.notDeepEqual(xs.slice(0, 5), Array.from({ length: 5 }, () => seededRng(8).next()));
});

test('argmax and banning tokens', () => {
  const l = new Float32Array([0.1, 3, 2]);
  assert.equal(argmax(l), 1);
  banTokens([1])(l, []);
  assert.equal(argmax(l), 2);
});

test('top-p keeps only the nucleus; the same seed gives the same samples', () => {
  const logits = new Float32Array([5, 4.9, -10, -10]);
  const rng = seededRng(1);
  const picks = Array.from({ length: 200 }, () => sampleTopP(logits, 1, 0.9, rng));
  assert.ok(picks.every((p) => p === 0 || p === 1));
  assert.ok(picks.includes(0) && picks.includes(1));
  const again = seededRng(1);
  assert.deepEqual(Array.from({ length: 200 }, () => sampleTopP(logits, 1, 0.9, again)), picks);
  // A tiny top-p is greedy.
  assert.ok(Array.from({ length: 20 }, () => sampleTopP(logits, 1, 0.01, rng)).every((p) => p === 0));
});
