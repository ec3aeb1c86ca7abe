// ModelSession.step in pieces (used on WebGPU, see webgpuMaxChunk) equals one run.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { KvCache } from '../../../backend/src/engine/kvCache';
import { readManifest } from '../../../backend/src/engine/modelFolder';
import { ModelSession, webgpuMaxChunk } from '../../../backend/src/engine/session';
import { TINY } from './helpers';

test('a prompt run in pieces gives the logits, routing and cache of one run', async () => {
  const m = readManifest(TINY);
  const ids = m.test_vectors!.prompt_ids;
  const s = await ModelSession.create(TINY, m, 'cpu', 1);
  try {
    assert.equal(s.maxChunk, 0); // cpu: one run
    for (const numLogits of [1, 5, 7, 8, 20, ids.length]) {
      const one = new KvCache(s.kv);
      const a = await s.step(ids, one, numLogits);
      (s as { maxChunk: number }).maxChunk = 7;
      const parts = new KvCache(s.kv);
      const b = await s.step(ids, parts, numLogits);
      (s as { maxChunk: number }).maxChunk = 0;
      assert.equal(b.numLogits, a.numLogits);
      assert.equal(b.logits.length, a.logits.length);
      let d = 0;
      for (let i = 0; i < a.logits.length; i++) d = Math.max(d, Math.abs(a.logits[i] - b.logits[i]));
      assert.ok(d < 1e-4, `numLogits ${numLogits}: max |diff| ${d}`);
      assert.deepEqual(b.routing.map((r) => r.loops), a.routing.map((r) => r.loops));
      assert.equal(parts.length, ids.length);
      one.dispose();
      parts.dispose();
    }
  } finally {
    await s.release();
  }
});

test('the WebGPU piece size: 24 by default, VFFN_WEBGPU_MAX_CHUNK overrides', () => {
  const old = process.env.VFFN_WEBGPU_MAX_CHUNK;
  try {
    delete process.env.VFFN_WEBGPU_MAX_CHUNK;
    assert.equal(webgpuMaxChunk(), 24);
    process.env.VFFN_WEBGPU_MAX_CHUNK = '0';
    assert.equal(webgpuMaxChunk(), 0);
    process.env.VFFN_WEBGPU_MAX_CHUNK = 'x';
    assert.equal(webgpuMaxChunk(), 24);
  } finally {
    if (old === undefined) delete process.env.VFFN_WEBGPU_MAX_CHUNK;
    else process.env.VFFN_WEBGPU_MAX_CHUNK = old;
  }
});
