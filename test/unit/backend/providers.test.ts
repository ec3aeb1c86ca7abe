import assert from 'node:assert/strict';
import * as path from 'node:path';
import { test } from 'node:test';
import { availableProviders, chooseThreads, probeProvider, sessionOptions } from '../../../backend/src/engine/providers';
import { readManifest } from '../../../backend/src/engine/modelFolder';
import { ModelSession } from '../../../backend/src/engine/session';
import { TINY } from './helpers';

test('cpu is always available and last', () => {
  const a = availableProviders();
  assert.equal(a[a.length - 1], 'cpu');
  assert.equal(new Set(a).size, a.length);
});

test('session options: no spinning, one inter-op thread, a sensible intra-op count', () => {
  const o = sessionOptions('cpu', 0);
  assert.deepEqual(o.extra, { 'session.intra_op.allow_spinning': '0', 'session.inter_op.allow_spinning': '0' });
  assert.equal(o.interOpNumThreads, 1);
  assert.ok(o.intraOpNumThreads! >= 1 && o.intraOpNumThreads! <= 4);
  assert.equal(chooseThreads(3), 3);
});

test('a provider probe that fails reports why, in a child process', async () => {
  const r = await probeProvider(path.join(TINY, 'no-such.onnx'), 'cpu',
    { pastNames: [], nHead: 2, headDim: 32, inputIds: 'input_ids', numLogits: 'num_logits' });
  assert.equal(r.ok, false);
  assert.ok((r.error ?? '').length > 0);
});

test('asking for webgpu runs it if it works here, else falls back to cpu and says why', async () => {
  const m = readManifest(TINY);
  const s = await ModelSession.create(TINY, m, 'webgpu', 1);
  const st = s.provider;
  assert.equal(st.requested, 'webgpu');
  if (st.active === 'cpu') {
    assert.equal(st.tried[0].provider, 'webgpu');
    assert.equal(st.tried[0].ok, false);
    assert.match(st.reason, /cpu runs because webgpu failed/);
  } else {
    assert.equal(st.active, 'webgpu');
  }
  await s.release();
});

test('auto on a machine without a GPU device runs cpu and says so', async (t) => {
  const m = readManifest(TINY);
  const s = await ModelSession.create(TINY, m, 'auto', 1);
  if (s.provider.active !== 'cpu') return t.skip(`a GPU provider runs here (${s.provider.active})`);
  assert.match(s.provider.reason, /cpu runs/);
  await s.release();
});
