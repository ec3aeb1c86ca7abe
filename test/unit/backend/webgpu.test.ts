// WebGPU execution provider: same greedy ids (and routing) as the CPU provider on tiny-test.
// Runs wherever onnxruntime-node finds a WebGPU adapter: a real GPU, or on a machine without one,
// Mesa 25's lavapipe (scripts/setup-webgpu.sh). Skips with the reason otherwise.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import type { ExecutionProvider } from '../../../common/protocol';
import { calibrate, createMeasuredSession } from '../../../backend/src/engine/calibrate';
import { Generator } from '../../../backend/src/engine/generator';
import { KvCache } from '../../../backend/src/engine/kvCache';
import { graphFileFor, Manifest, readManifest } from '../../../backend/src/engine/modelFolder';
import { availableProviders, probeProvider } from '../../../backend/src/engine/providers';
import { ModelSession } from '../../../backend/src/engine/session';
import { REPO, tempDir, TINY } from './helpers';

const PY = path.join(REPO, '.venv', 'bin', 'python');
let noAdapter: string | null = null;

before(async () => {
  if (!availableProviders().includes('webgpu')) {
    noAdapter = `onnxruntime-node offers no webgpu provider on ${process.platform}-${process.arch}`;
  } else {
    const m = readManifest(TINY);
    const probe = await probeProvider(path.join(TINY, m.graph.file), 'webgpu', {
      pastNames: [0, 1].flatMap((i) => [`past_key_${i}`, `past_value_${i}`]), nHead: m.architecture.n_head,
      headDim: m.graph.head_dim, inputIds: m.graph.inputs.input_ids, numLogits: m.graph.inputs.num_logits,
    });
    if (!probe.ok) noAdapter = `no WebGPU adapter here (${probe.error}); on Linux without a GPU run scripts/setup-webgpu.sh as root`;
  }
  if (noAdapter) console.log(`# webgpu tests skipped: ${noAdapter}`);
});

async function greedy(dir: string, m: Manifest, provider: ExecutionProvider) {
  const s = await ModelSession.create(dir, m, provider, 1);
  try {
    assert.equal(s.activeProvider, provider, s.provider.reason);
    const tv = m.test_vectors!;
    const cache = new KvCache(s.kv);
    const gen = new Generator(s, cache, { temperature: 0, topP: 1, stopIds: [] });
    const pre = await gen.appendTokens(tv.prompt_ids);
    const toks = [];
    for (let i = 0; i < tv.greedy_ids.length; i++) toks.push(await gen.nextToken());
    cache.dispose();
    const routing = [...pre.routing, ...toks.slice(0, -1).map((t) => t.routing)];
    return { ids: toks.map((t) => t.id), loops: routing.map((r) => r.loops) };
  } finally {
    await s.release();
  }
}

test('webgpu gives the same greedy ids and routing as cpu (tiny-test, cpu-sparse graph)', async (t) => {
  if (noAdapter) return t.skip(noAdapter);
  const m = readManifest(TINY);
  const cpu = await greedy(TINY, m, 'cpu');
  const gpu = await greedy(TINY, m, 'webgpu');
  assert.deepEqual(cpu.ids, m.test_vectors!.greedy_ids);
  assert.deepEqual(gpu.ids, cpu.ids);
  assert.deepEqual(gpu.loops, cpu.loops);
});

let maskedRoot: string | null = null;
after(() => {
  if (maskedRoot) rmSync(maskedRoot, { recursive: true, force: true });
});

test('the masked GPU variant (exported with --gpu-variant) on webgpu gives the same greedy ids and routing', async (t) => {
  if (noAdapter) return t.skip(noAdapter);
  if (!existsSync(PY)) return t.skip(`no Python toolchain at ${PY} to export the masked variant`);
  maskedRoot = tempDir('vffn-masked-');
  // The same seed search as models/tiny-test, with the GPU variant: model.onnx comes out byte-identical.
  const code = 'import functools, sys, make_test_models as m\n'
    + 'm.export_model = functools.partial(m.export_model, gpu_variant=True)\n'
    + 'm.main(["--out-root", sys.argv[1]])\n';
  const r = spawnSync(PY, ['-c', code, maskedRoot], { cwd: path.join(REPO, 'models', 'toolchain'), encoding: 'utf8', timeout: 120_000 });
  assert.equal(r.status, 0, `export failed: ${r.stderr}`);
  const dir = path.join(maskedRoot, 'tiny-test');
  const m = readManifest(dir);
  assert.equal(graphFileFor(m, 'webgpu'), 'model.masked.onnx');
  assert.equal(m.files['model.onnx'].sha256, readManifest(TINY).files['model.onnx'].sha256);
  const cpu = await greedy(dir, m, 'cpu');
  const gpu = await greedy(dir, m, 'webgpu');
  assert.deepEqual(cpu.ids, m.test_vectors!.greedy_ids);
  assert.deepEqual(gpu.ids, cpu.ids);
  assert.deepEqual(gpu.loops, cpu.loops);
});

test('calibration measures webgpu and cpu and picks one, with both numbers in the reason', async (t) => {
  if (noAdapter) return t.skip(noAdapter);
  const dir = tempDir('vffn-calib-');
  try {
    const c = await calibrate(TINY, readManifest(TINY), ['webgpu', 'cpu'], 1,
      { cacheFile: path.join(dir, 'c.json'), prefillTokens: 32, decodeSteps: 2, repeats: 1 });
    assert.deepEqual(c.timings.map((x) => x.provider), ['webgpu', 'cpu']);
    assert.match(c.reason, /webgpu: prefill 32 tok .* cpu: prefill 32 tok/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('auto with webgpu and cpu usable: the session runs on the measured winner, the reason has the numbers', async (t) => {
  if (noAdapter) return t.skip(noAdapter);
  const dir = tempDir('vffn-calib-');
  try {
    const opts = { cacheFile: path.join(dir, 'c.json'), prefillTokens: 32, decodeSteps: 2, repeats: 1, candidates: ['webgpu', 'cpu'] as ExecutionProvider[] };
    const s = await createMeasuredSession(TINY, readManifest(TINY), 1, opts);
    assert.ok(s);
    try {
      assert.equal(s.provider.requested, 'auto');
      assert.ok(['webgpu', 'cpu'].includes(s.activeProvider));
      assert.match(s.provider.reason, new RegExp(`^${s.activeProvider} runs: lowest measured completion cost`));
    } finally {
      await s.release();
    }
    const again = await createMeasuredSession(TINY, readManifest(TINY), 1, opts);
    assert.match(again!.provider.reason, /\(calibration from cache\)$/);
    await again!.release();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
