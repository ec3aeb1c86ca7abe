import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import {
  calibrate, calibrationKey, chooseByTimings, createMeasuredSession, ordinaryIdRange, ProviderTiming, readCalibrationCache, timingIds,
} from '../../../backend/src/engine/calibrate';
import { median } from '../../../backend/src/engine/telemetry';
import { readManifest } from '../../../backend/src/engine/modelFolder';
import { autoCandidates } from '../../../backend/src/engine/providers';
import { tempDir, TINY } from './helpers';

const t = (provider: ProviderTiming['provider'], prefillMs: number, decodeStepMs: number): ProviderTiming =>
  ({ provider, prefillMs, prefillTokens: 512, decodeStepMs });

test('decision: the lowest prefill + N decode steps wins, and the reason carries the numbers', () => {
  // GPU: prefill 3x faster but decode slower; with 16 tokens the GPU still wins, with 64 the CPU does.
  const timings = [t('webgpu', 30, 12), t('cpu', 240, 9)];
  const c16 = chooseByTimings(timings, 16);
  assert.equal(c16.provider, 'webgpu'); // 30 + 192 = 222 < 240 + 144 = 384
  assert.equal(c16.prefillProvider, 'webgpu');
  assert.equal(c16.decodeProvider, 'cpu');
  assert.match(c16.reason, /webgpu runs: lowest measured completion cost/);
  assert.match(c16.reason, /cpu: prefill 512 tok 240\.0 ms, decode 9\.00 ms\/tok, completion 384\.0 ms/);
  assert.match(c16.reason, /Prefill alone is fastest on webgpu, decode on cpu/);
  assert.equal(chooseByTimings(timings, 64).provider, 'webgpu'); // 798 < 816
});

test('decision: exact arithmetic, ties go to the earlier (preferred) provider', () => {
  assert.equal(chooseByTimings([t('webgpu', 30, 12), t('cpu', 240, 9)], 100).provider, 'cpu'); // 1230 vs 1140
  assert.equal(chooseByTimings([t('cuda', 100, 1), t('cpu', 100, 1)], 16).provider, 'cuda');
  assert.equal(chooseByTimings([t('cpu', 100, 1), t('cuda', 100, 1)], 16).provider, 'cpu');
  const only = chooseByTimings([t('cpu', 5, 1)], 16);
  assert.equal(only.provider, 'cpu');
  assert.match(only.reason, /cpu runs: the only usable provider/);
  assert.throws(() => chooseByTimings([], 16), /no provider timings/);
});

test('median and timing ids', () => {
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([4, 1, 2, 3]), 2.5);
  assert.ok(Number.isNaN(median([])));
  const ids = timingIds(600, 2048, [0, 1, 2, 3, 4, 5]);
  assert.equal(ids.length, 600);
  assert.ok(ids.every((i) => i >= 6 && i < 2048));
  // Qwen: special ids at the top of the vocabulary, ordinary ids from 0.
  const qwen = timingIds(5000, 151936, [151643, 151662, 151659, 151661, 151660, 151664, 151645]);
  assert.ok(qwen.every((i) => i >= 0 && i < 151643));
  assert.ok(qwen.some((i) => i < 6));
  assert.deepEqual(ordinaryIdRange(100, []), { lo: 0, hi: 100 });
});

test('calibration on cpu only: measures tiny-test, returns cpu, writes then reads the cache', async () => {
  const dir = tempDir('vffn-calib-');
  try {
    const file = path.join(dir, 'sub', 'calibration.json');
    const manifest = readManifest(TINY);
    const opts = { cacheFile: file, prefillTokens: 64, decodeSteps: 4, repeats: 2 };
    const first = await calibrate(TINY, manifest, ['cpu'], 1, opts);
    assert.equal(first.provider, 'cpu');
    assert.equal(first.cached, false);
    assert.equal(first.timings.length, 1);
    assert.ok(first.timings[0].prefillMs > 0 && first.timings[0].decodeStepMs > 0);
    assert.ok(existsSync(file));
    assert.deepEqual(readdirSync(path.dirname(file)), ['calibration.json']); // no temp file left
    const key = calibrationKey(manifest, ['cpu'], 1);
    assert.ok(key.startsWith(manifest.files['model.onnx'].sha256));
    assert.equal(readCalibrationCache(file)[key].provider, 'cpu');
    const second = await calibrate(TINY, manifest, ['cpu'], 1, opts);
    assert.equal(second.cached, true);
    assert.deepEqual(second.timings, first.timings);
    // another thread count is another machine setting: measured again, both kept
    await calibrate(TINY, manifest, ['cpu'], 2, opts);
    assert.equal(Object.keys(readCalibrationCache(file)).length, 2);
    // a corrupt cache is measured over, not fatal
    writeFileSync(file, '{not json');
    assert.equal((await calibrate(TINY, manifest, ['cpu'], 1, opts)).cached, false);
    assert.equal(JSON.parse(readFileSync(file, 'utf8'))[key].provider, 'cpu');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('auto with one candidate provider (cpu-only machine) skips calibration entirely', async (ctx) => {
  if (autoCandidates().candidates.length > 1) return ctx.skip('this machine has a GPU candidate');
  const dir = tempDir('vffn-calib-');
  try {
    const file = path.join(dir, 'calibration.json');
    const s = await createMeasuredSession(TINY, readManifest(TINY), 1, { cacheFile: file });
    assert.equal(s, null);
    assert.equal(existsSync(file), false);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
