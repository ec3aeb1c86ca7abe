import assert from 'node:assert/strict';
import { test } from 'node:test';
import { computeCost, percentile, probAndEntropy, summarizeCompute } from '../../../backend/src/engine/telemetry';

const close = (a: number, b: number, eps = 1e-9) => assert.ok(Math.abs(a - b) < eps, `${a} != ${b}`);

test('probability and entropy of a uniform and a peaked distribution', () => {
  const u = probAndEntropy(new Float32Array([0, 0, 0, 0]), 2);
  close(u.prob, 0.25);
  close(u.entropy, Math.log(4));
  const p = probAndEntropy(new Float32Array([100, 0, 0]), 0);
  close(p.prob, 1, 1e-12);
  close(p.entropy, 0, 1e-12);
  // Large logits do not overflow.
  const big = probAndEntropy(new Float32Array([1e4, 1e4]), 1);
  close(big.prob, 0.5);
});

test('banned tokens (-Infinity logits) leave entropy finite', () => {
  const r = probAndEntropy(new Float32Array([0, -Infinity, 0, -Infinity]), 0);
  close(r.prob, 0.5);
  close(r.entropy, Math.log(2));
});

test('compute: versatile counts loops plus the width path below 4 loops; baselines are fixed', () => {
  close(computeCost('versatile', [1, 1]).vsDense, 1 + 1 / 12);
  close(computeCost('versatile', [4, 4]).vsDense, 4);
  close(computeCost('versatile', [4, 4]).vsMax, 1);
  close(computeCost('versatile', [1, 4]).vsDense, (1 + 1 / 12 + 4) / 2);
  close(computeCost('versatile', [2, 3]).vsMax, (2 + 3 + 2 / 12) / 2 / 4);
  assert.deepEqual(computeCost('dense', [1, 1, 1]), { vsDense: 1, vsMax: 0.25 });
  close(computeCost('loop', [2, 2]).vsDense, 2);
});

test('compute: upcycled counts the gate projection, the kept share of up/down, and a full FFN per extra loop', () => {
  // 1/3 + 2/3 × share + (ℓ − 1) per layer, averaged over layers.
  close(computeCost('upcycled', [1, 1], [1, 1]).vsDense, 1);
  close(computeCost('upcycled', [1, 1], [0, 0]).vsDense, 1 / 3);
  close(computeCost('upcycled', [1, 2], [0.5, 0.25]).vsDense, ((1 / 3 + 1 / 3) + (1 / 3 + 1 / 6 + 1)) / 2);
  close(computeCost('upcycled', [4], [0.62]).vsMax, (1 / 3 + (2 / 3) * 0.62 + 3) / 4);
  // Share unknown (an older graph without the output): counted as all units used.
  close(computeCost('upcycled', [1, 1]).vsDense, 1);
  assert.deepEqual(computeCost('upcycled', []), { vsDense: 0, vsMax: 0 });
});

test('compute summary: upcycled mean FFN share; other kinds have none', () => {
  const r = (loops: number[], ffnShare?: number[]) => ({ loops, lambdas: [], experts: [], weights: [], ...(ffnShare ? { ffnShare } : {}) });
  const s = summarizeCompute('upcycled', [r([1, 1], [0.5, 1]), r([2, 1], [0, 0.5])]);
  close(s.meanFfnShare!, 0.5);
  close(s.vsDense, ((1 / 3 + 1 / 3 + 1) / 2 + (1 / 3 + 1 + 1 / 3 + 1 / 3) / 2) / 2);
  assert.equal('meanFfnShare' in summarizeCompute('versatile', [r([1, 1])]), false);
  assert.equal('meanFfnShare' in summarizeCompute('upcycled', []), false);
});

test('compute summary: per-layer mean, loop shares, mean cost', () => {
  const r = (loops: number[]) => ({ loops, lambdas: [], experts: [], weights: [] });
  const s = summarizeCompute('versatile', [r([1, 4]), r([3, 4]), r([])]);
  assert.deepEqual(s.meanLoopsPerLayer, [2, 4]);
  assert.deepEqual(s.loopShare, [0.25, 0, 0.25, 0.5]);
  close(s.vsDense, ((1 + 1 / 12 + 4) / 2 + (3 + 1 / 12 + 4) / 2) / 2);
  assert.deepEqual(summarizeCompute('dense', []).loopShare, [0, 0, 0, 0]);
});

test('percentile', () => {
  assert.equal(percentile([], 50), null);
  assert.equal(percentile([1, 2, 3, 4], 50), 2);
  assert.equal(percentile([1, 2, 3, 4], 95), 4);
});
