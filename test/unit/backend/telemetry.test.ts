import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ModelKind } from '../../../common/protocol';
import { computeCost, computeShape, median, percentile, probAndEntropy, summarizeCompute } from '../../../backend/src/engine/telemetry';

/** The shape of this project's models: 4 loops, top-2 of 8 experts (a width path of 1/12). */
const shape = (kind: ModelKind, max_loops = 4) => computeShape({ kind, max_loops, n_experts: 8, top_k: 2 });

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
  close(computeCost(shape('versatile'), [1, 1]).vsDense, 1 + 1 / 12);
  close(computeCost(shape('versatile'), [4, 4]).vsDense, 4);
  close(computeCost(shape('versatile'), [4, 4]).vsMax, 1);
  close(computeCost(shape('versatile'), [1, 4]).vsDense, (1 + 1 / 12 + 4) / 2);
  close(computeCost(shape('versatile'), [2, 3]).vsMax, (2 + 3 + 2 / 12) / 2 / 4);
  assert.deepEqual(computeCost(shape('dense'), [1, 1, 1]), { vsDense: 1, vsMax: 0.25 });
  close(computeCost(shape('loop'), [2, 2]).vsDense, 2);
});

test('compute: upcycled counts the gate projection, the kept share of up/down, and a full FFN per extra loop', () => {
  // 1/3 + 2/3 × share + (ℓ − 1) per layer, averaged over layers.
  close(computeCost(shape('upcycled'), [1, 1], [1, 1]).vsDense, 1);
  close(computeCost(shape('upcycled'), [1, 1], [0, 0]).vsDense, 1 / 3);
  close(computeCost(shape('upcycled'), [1, 2], [0.5, 0.25]).vsDense, ((1 / 3 + 1 / 3) + (1 / 3 + 1 / 6 + 1)) / 2);
  close(computeCost(shape('upcycled'), [4], [0.62]).vsMax, (1 / 3 + (2 / 3) * 0.62 + 3) / 4);
  // Share unknown (an older graph without the output): counted as all units used.
  close(computeCost(shape('upcycled'), [1, 1]).vsDense, 1);
  assert.deepEqual(computeCost(shape('upcycled'), []), { vsDense: 0, vsMax: 0 });
});

test('compute summary: upcycled mean FFN share; other kinds have none', () => {
  const r = (loops: number[], ffnShare?: number[]) => ({ loops, lambdas: [], experts: [], weights: [], ...(ffnShare ? { ffnShare } : {}) });
  const s = summarizeCompute(shape('upcycled'), [r([1, 1], [0.5, 1]), r([2, 1], [0, 0.5])]);
  close(s.meanFfnShare!, 0.5);
  close(s.vsDense, ((1 / 3 + 1 / 3 + 1) / 2 + (1 / 3 + 1 + 1 / 3 + 1 / 3) / 2) / 2);
  assert.equal('meanFfnShare' in summarizeCompute(shape('versatile'), [r([1, 1])]), false);
  assert.equal('meanFfnShare' in summarizeCompute(shape('upcycled'), []), false);
});

test('compute summary: per-layer mean, loop shares, mean cost', () => {
  const r = (loops: number[]) => ({ loops, lambdas: [], experts: [], weights: [] });
  const s = summarizeCompute(shape('versatile'), [r([1, 4]), r([3, 4]), r([])]);
  assert.deepEqual(s.meanLoopsPerLayer, [2, 4]);
  assert.deepEqual(s.loopShare, [0.25, 0, 0.25, 0.5]);
  close(s.vsDense, ((1 + 1 / 12 + 4) / 2 + (3 + 1 / 12 + 4) / 2) / 2);
  assert.deepEqual(summarizeCompute(shape('dense'), []).loopShare, [0, 0, 0, 0]);
});

test('compute follows the manifest: max_loops and the width path of top_k of n_experts', () => {
  const three = computeShape({ kind: 'versatile', max_loops: 3, n_experts: 4, top_k: 1 });
  close(three.widthPathCost, 1 / 12);
  close(computeCost(three, [3, 3]).vsMax, 1);
  close(computeCost(three, [2, 3]).vsDense, (2 + 1 / 12 + 3) / 2);
  const s = summarizeCompute(three, [{ loops: [1, 3], lambdas: [], experts: [], weights: [] }]);
  assert.deepEqual(s.loopShare, [0.5, 0, 0.5]);
  close(computeShape({ kind: 'versatile', max_loops: 4, n_experts: 8, top_k: 4 }).widthPathCost, 1 / 6);
  assert.equal(computeShape({ kind: 'upcycled', max_loops: 4, n_experts: 4864, top_k: 0 }).widthPathCost, 0);
  assert.deepEqual(computeCost(shape('dense', 2), [1, 1]), { vsDense: 1, vsMax: 0.5 });
});

test('percentile and median', () => {
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([4, 1, 2, 3]), 2.5);
  assert.ok(Number.isNaN(median([])));
  assert.equal(percentile([], 50), null);
  assert.equal(percentile([1, 2, 3, 4], 50), 2);
  assert.equal(percentile([1, 2, 3, 4], 95), 4);
});
