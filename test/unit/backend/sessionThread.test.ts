// The session's own thread (sessionThread.ts + sessionWorker.ts) on the tiny test model: the same
// numbers as the graph run in this thread, a clear error for a graph the manifest does not match,
// and runs that fail instead of hanging once the thread is gone.
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { test } from 'node:test';
import { InferenceSession } from 'onnxruntime-node';
import { GraphRunner } from '../../../backend/src/engine/graphRunner';
import { KvCache } from '../../../backend/src/engine/kvCache';
import { Manifest, readManifest } from '../../../backend/src/engine/modelFolder';
import { sessionOptions } from '../../../backend/src/engine/providers';
import { ModelSession } from '../../../backend/src/engine/session';
import { SessionThread } from '../../../backend/src/engine/sessionThread';
import { TINY } from './helpers';

const manifest = readManifest(TINY);
const IDS = [10, 20, 30, 40, 50, 60];

test('steps in the session thread give exactly the logits and routing of the graph run here', async () => {
  const threaded = await ModelSession.create(TINY, manifest, 'cpu', 1);
  const here = new ModelSession(
    new GraphRunner(await InferenceSession.create(path.join(TINY, manifest.graph.file), sessionOptions('cpu', 1)), manifest),
    manifest, threaded.provider,
  );
  try {
    const run = async (s: ModelSession) => {
      const cache = new KvCache(s.kv);
      await s.step(IDS.slice(0, 4), cache, 1);
      await s.step([99, 98], cache, 1);
      cache.rewind(4);                                   // taken back: the store follows at the next run
      const r = await s.step(IDS.slice(4), cache, 2);
      cache.dispose();
      return r;
    };
    const a = await run(threaded);
    const b = await run(here);
    assert.deepEqual(Array.from(a.logits), Array.from(b.logits));
    assert.deepEqual(a.routing, b.routing);
    assert.equal(a.numLogits, 2);
  } finally {
    await threaded.release();
    await here.release();
  }
});

test('a graph without the inputs the manifest names is refused with the name, and the thread ends', async () => {
  const wrong: Manifest = { ...manifest, graph: { ...manifest.graph, inputs: { ...manifest.graph.inputs, input_ids: 'tokens' } } };
  await assert.rejects(SessionThread.create(TINY, wrong, 'cpu', 1), /has no input "tokens" that manifest\.json names/);
});

test('once the thread is gone, the run in flight and every later run fail with the reason', async () => {
  const { runner } = await SessionThread.create(TINY, manifest, 'cpu', 1);
  const inFlight = assert.rejects(runner.run({ ids: IDS, numLogits: 1, cacheId: 1, keep: 0 }), /the inference thread stopped/);
  await runner.kill();
  await inFlight;
  await assert.rejects(runner.run({ ids: IDS, numLogits: 1, cacheId: 1, keep: 0 }), /the inference thread stopped/);
  await runner.release();   // releasing a dead thread does not hang either
});

test('a run that keeps more positions than the store holds is refused, and the thread serves on', async () => {
  const { runner } = await SessionThread.create(TINY, manifest, 'cpu', 1);
  try {
    await assert.rejects(runner.run({ ids: [1], numLogits: 1, cacheId: 7, keep: 3 }), /3 positions expected, 0 stored/);
    const ok = await runner.run({ ids: IDS, numLogits: 1, cacheId: 7, keep: 0 });
    assert.equal(ok.logits.dims[1], 1);
  } finally {
    await runner.release();
  }
});
