// The graph contract for upcycled models without a real model: a stand-in InferenceSession checks
// the KV cache it is fed ([1, n_kv_head, P, head_dim], grouped-query attention) and returns
// route_ffn_share, which ModelSession must read into TokenRouting.ffnShare.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Tensor } from 'onnxruntime-node';
import type { ProviderStatus } from '../../../common/protocol';
import { GraphRunner, GraphSession } from '../../../backend/src/engine/graphRunner';
import { KvCache } from '../../../backend/src/engine/kvCache';
import { Manifest, readManifest } from '../../../backend/src/engine/modelFolder';
import { ModelSession } from '../../../backend/src/engine/session';
import { computeCost, computeShape } from '../../../backend/src/engine/telemetry';
import { TINY } from './helpers';

const L = 2;
const KV = 1;
const HD = 4;
const V = 10;

function manifest(): Manifest {
  const m = readManifest(TINY);
  return {
    ...m,
    architecture: { ...m.architecture, kind: 'upcycled', n_layer: L, n_head: 4, n_kv_head: KV, vocab_size: V },
    graph: { ...m.graph, head_dim: HD, outputs: { ...m.graph.outputs, ffn_share: 'route_ffn_share' } },
  };
}

/** Share of token at position p in layer l: (p + 1) / 10 + l / 100. */
const shareAt = (l: number, p: number) => (p + 1) / 10 + l / 100;

class FakeSession {
  readonly inputNames = ['input_ids', 'num_logits', ...Array.from({ length: L }, (_, i) => [`past_key_${i}`, `past_value_${i}`]).flat()];
  readonly outputNames = ['logits', 'route_loops', 'route_lambda', 'route_experts', 'route_weights', 'route_loop_probs', 'route_ffn_share',
    ...Array.from({ length: L }, (_, i) => [`present_key_${i}`, `present_value_${i}`]).flat()];
  readonly pastShapes: number[][] = [];

  async run(feeds: Record<string, Tensor>): Promise<Record<string, Tensor>> {
    const t = feeds.input_ids.dims[1];
    const past = feeds.past_key_0.dims[2];
    const out: Record<string, Tensor> = {
      logits: new Tensor('float32', new Float32Array(V), [1, 1, V]),
      route_loops: new Tensor('int64', new BigInt64Array(L * t).fill(1n), [L, t]),
      route_lambda: new Tensor('float32', new Float32Array(L * t), [L, t]),
      route_experts: new Tensor('int64', new BigInt64Array(L * t * 2).fill(-1n), [L, t, 2]),
      route_weights: new Tensor('float32', new Float32Array(L * t * 2), [L, t, 2]),
      route_loop_probs: new Tensor('float32', new Float32Array(L * t * 4), [L, t, 4]),
      route_ffn_share: new Tensor('float32', Float32Array.from({ length: L * t }, (_, k) => shareAt(Math.floor(k / t), past + (k % t))), [L, t]),
    };
    for (let i = 0; i < L; i++) {
      for (const kind of ['key', 'value']) {
        const p = feeds[`past_${kind}_${i}`];
        this.pastShapes.push([...p.dims]);
        const data = new Float32Array(KV * (past + t) * HD);
        out[`present_${kind}_${i}`] = new Tensor('float32', data, [1, KV, past + t, HD]);
      }
    }
    return out;
  }

  async release(): Promise<void> {}
}

test('upcycled: the KV cache has n_kv_head heads and route_ffn_share becomes TokenRouting.ffnShare', async () => {
  const fake = new FakeSession();
  const status: ProviderStatus = { requested: 'cpu', active: 'cpu', available: ['cpu'], tried: [], reason: 'test' };
  const s = new ModelSession(new GraphRunner(fake as unknown as GraphSession, manifest()), manifest(), status);
  assert.deepEqual(s.kv, { nLayer: L, nHead: KV, headDim: HD });
  const cache = new KvCache(s.kv);
  const a = await s.step([1, 2, 3], cache, 1);
  const b = await s.step([4], cache, 1);
  assert.deepEqual(fake.pastShapes[0], [1, KV, 0, HD]);
  assert.deepEqual(fake.pastShapes.at(-1), [1, KV, 3, HD]);
  assert.equal(cache.length, 4);
  assert.equal(cache.bytes, 2 * L * KV * HD * 4 * 4);
  const shares = [...a.routing, ...b.routing].map((r) => r.ffnShare!.map((x) => Math.round(x * 1000) / 1000));
  assert.deepEqual(shares, [[0.1, 0.11], [0.2, 0.21], [0.3, 0.31], [0.4, 0.41]]);
  assert.deepEqual(b.routing[0].experts, [[-1, -1], [-1, -1]]);
  const c = computeCost(computeShape(manifest().architecture), b.routing[0].loops, b.routing[0].ffnShare);
  assert.ok(Math.abs(c.vsDense - (1 / 3 + (2 / 3) * (0.4 + 0.41) / 2)) < 1e-6);
  cache.dispose();
});
