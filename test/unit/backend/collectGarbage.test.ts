// collectGarbage (engine/collectGarbage.ts): loadModel calls it so that the load's garbage is not resident
// when the first prompts build their peak; it must really collect, also where node was started without --expose-gc.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as path from 'node:path';
import { collectGarbage } from '../../../backend/src/engine/collectGarbage';
import { startWorker } from '../../../backend/src/engine/threads';

const MB = 2 ** 20;

/** Heap bytes freed by collectGarbage after dropping ~40 MB of small objects. */
function freedByCollect(): number {
  let junk: { i: number; s: string }[] | null = Array.from({ length: 400_000 }, (_, i) => ({ i, s: `row ${i}` }));
  assert.equal(junk.length, 400_000);
  const before = process.memoryUsage().heapUsed;
  junk = null;
  assert.equal(collectGarbage(), true);
  return before - process.memoryUsage().heapUsed;
}

test('collectGarbage frees what nothing references, without --expose-gc', () => {
  assert.equal(typeof (globalThis as { gc?: unknown }).gc, 'undefined', 'the test runs without --expose-gc');
  const freed = freedByCollect();
  assert.ok(freed > 10 * MB, `freed ${(freed / MB).toFixed(1)} MB`);
});

test('collectGarbage works in a worker thread (where the backend loads models)', async () => {
  const w = startWorker(path.join(__dirname, 'fixtures', 'gcWorker.ts'), {});
  const msg = await new Promise<{ ok: boolean; freed: number }>((resolve, reject) => { w.once('message', resolve); w.once('error', reject); });
  await w.terminate();
  assert.equal(msg.ok, true);
  assert.ok(msg.freed > 10 * MB, `freed ${(msg.freed / MB).toFixed(1)} MB in the worker`);
});
