// The engine in its worker thread (backend/src/engineHost.ts + engineWorker.ts), through real
// onnxruntime-node: the main thread keeps running while the worker loads and computes,
// cancellation reaches a busy worker, a dead worker is replaced, a hot swap keeps answering.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { CancellationTokenSource } from 'vscode-languageserver-protocol/node';
import type { CompleteParams, CompleteResult, StatusParams } from '../../../common/protocol';
import { EngineHost, EngineHostOptions } from '../../../backend/src/engineHost';
import { MODELS, REPO } from './helpers';

// Full-size prompts (the 1,024-token cap, seconds of prefill on a CPU), whatever budget the machine's speed would give.
process.env.VFFN_MAX_PROMPT_TOKENS = '1024';

const DEFAULT = 'qwen2.5-coder-0.5b-vffn';
const DENSE = 'qwen2.5-coder-0.5b-dense';
const hasModel = (name: string) => existsSync(path.join(MODELS, name, 'model.onnx'));
const NO_DEFAULT = hasModel(DEFAULT) ? false : `models/${DEFAULT}/model.onnx is not built (npm run setup builds it)`;

function host(over: Partial<EngineHostOptions> = {}) {
  const statuses: StatusParams[] = [];
  const logs: string[] = [];
  const h = new EngineHost({
    modelDirs: [MODELS], provider: 'cpu', threads: 0, log: (m) => logs.push(m), onStatus: (s) => statuses.push(s), ...over,
  });
  return { h, statuses, logs };
}

const req = (over: Partial<CompleteParams> = {}): CompleteParams => ({
  requestId: 'r', languageId: 'python', prefix: 'def add(a, b):\n    return a', suffix: '\n', maxTokens: 8, ...over,
});
/** A prompt of about the 1,024-token cap: real source code before the cursor. */
const LONG_PREFIX = readFileSync(path.join(REPO, 'backend/src/engine/engine.ts'), 'utf8').slice(0, 12_000) + '\n  private helper(';
/** Many tokens to generate and no time limit: a request that runs until it is stopped. */
const long = (over: Partial<CompleteParams> = {}) =>
  req({ requestId: 'long', prefix: 'x = 1\n'.repeat(2000) + 'y = ', maxTokens: 400, maxTimeMs: 30_000, ...over });

/** Counts ticks of a 10 ms interval on this (the main) thread while `fn` runs; also the longest gap between ticks. */
async function ticking<T>(fn: () => Promise<T>): Promise<{ value: T; ticks: number; maxGapMs: number; ms: number }> {
  let ticks = 0;
  let last = performance.now();
  let maxGapMs = 0;
  const t0 = last;
  const timer = setInterval(() => {
    const now = performance.now();
    maxGapMs = Math.max(maxGapMs, now - last);
    last = now;
    ticks++;
  }, 10);
  try {
    const value = await fn();
    return { value, ticks, maxGapMs: Math.max(maxGapMs, performance.now() - last), ms: performance.now() - t0 };
  } finally {
    clearInterval(timer);
  }
}

test('the main thread keeps ticking while the worker loads the default model and completes a long prompt', { skip: NO_DEFAULT }, async () => {
  const { h, statuses } = host();
  try {
    const load = await ticking(() => h.start(DEFAULT));
    assert.equal(load.value.ok, true, load.value.error);
    assert.equal(h.activeModel?.name, DEFAULT);
    assert.ok(load.ticks >= 10, `${load.ticks} ticks in ${load.ms.toFixed(0)} ms of loading (longest gap ${load.maxGapMs.toFixed(0)} ms)`);
    // Each step went out, the load's status was re-sent (each second) while the worker was busy, and it ended ready.
    // Which step lasts past a second depends on the machine (creating the session, or measuring prefill speed).
    const steps = statuses.filter((s) => s.loading?.model === DEFAULT).map((s) => s.loading!.step);
    for (const step of ['verifying files', 'loading tokenizer', 'creating session'] as const) assert.ok(steps.includes(step), `steps seen: ${steps}`);
    assert.ok(load.ms < 2000 || steps.length > new Set(steps).size, `the load's status was not re-sent in ${load.ms.toFixed(0)} ms: ${steps}`);
    const last = statuses[statuses.length - 1];
    assert.equal(last.state, 'ready');
    assert.equal(last.loading, undefined);

    const run = await ticking(() => h.complete(req({ prefix: LONG_PREFIX, suffix: '', maxTokens: 16 })));
    assert.equal(run.value.error, undefined);
    assert.ok(run.value.timings.promptTokens >= 500, `prompt of ${run.value.timings.promptTokens} tokens`);
    assert.ok(run.ticks >= 10, `${run.ticks} ticks in ${run.ms.toFixed(0)} ms of completing (longest gap ${run.maxGapMs.toFixed(0)} ms)`);
  } finally {
    await h.dispose();
  }
});

test('a cancel reaches a completion while the worker is busy with it', async () => {
  const { h, statuses } = host({ threads: 1 });
  try {
    assert.equal((await h.start('tiny-test')).ok, true);
    const src = new CancellationTokenSource();
    const seen = statuses.length;
    const p = h.complete(long(), src.token);
    // Cancel once the worker has begun it (its 'working' status), so the cancel meets a running request.
    while (!statuses.slice(seen).some((s) => s.state === 'working')) await new Promise((r) => setImmediate(r));
    const cancelledAt = performance.now();
    src.cancel();
    const r = await p;
    const afterCancelMs = performance.now() - cancelledAt;
    assert.equal(r.stopReason, 'cancelled');
    assert.equal(r.completion, '');
    assert.ok(afterCancelMs < 5000, `answered ${afterCancelMs.toFixed(0)} ms after the cancel`);
    // A request cancelled before it is sent ends at once too; its flag slot is reused cleanly by the next one.
    const pre = new CancellationTokenSource();
    pre.cancel();
    assert.equal((await h.complete(req({ requestId: 'pre' }), pre.token)).stopReason, 'cancelled');
    const next = await h.complete(req({ requestId: 'next' }), new CancellationTokenSource().token);
    assert.equal(next.error, undefined);
    assert.ok(next.tokens.length > 0);
  } finally {
    await h.dispose();
  }
});

test('a cancel during a long prefill of the default model is honoured', { skip: NO_DEFAULT }, async () => {
  const { h } = host();
  try {
    assert.equal((await h.start(DEFAULT)).ok, true);
    const src = new CancellationTokenSource();
    const t0 = performance.now();
    const p = h.complete(req({ prefix: LONG_PREFIX, suffix: '', maxTokens: 200, maxTimeMs: 30_000 }), src.token);
    setTimeout(() => src.cancel(), 300);
    const r = await p;
    assert.equal(r.stopReason, 'cancelled');
    assert.ok(performance.now() - t0 < 10_000);
  } finally {
    await h.dispose();
  }
});

test('a worker that dies fails its pending request, says so, and a new worker answers the next one', async () => {
  const { h, statuses, logs } = host({ threads: 1 });
  try {
    assert.equal((await h.start('tiny-test')).ok, true);
    for (const how of ['throw', 'sessionThread'] as const) {
      const pending = h.complete(long({ requestId: `pending-${how}` }), new CancellationTokenSource().token);
      h.crashWorkerForTest(how);
      await assert.rejects(pending, /inference worker stopped/);
      assert.ok(statuses.some((s) => s.state === 'error' && /inference worker stopped.*reloading tiny-test/.test(s.message ?? '')));
      assert.ok(logs.some((l) => /inference worker stopped/.test(l)));
      const next = await h.complete(req({ requestId: `after-${how}` }));
      assert.equal(next.error, undefined, `after ${how}`);
      assert.equal(next.model, 'tiny-test');
      assert.ok(next.tokens.length > 0);
      assert.equal((await h.listModels()).active, 'tiny-test');
    }
    // A worker that keeps dying is not restarted forever: the third crash within a minute ends it, with a reason.
    h.crashWorkerForTest('throw');
    await new Promise((r) => setTimeout(r, 200));
    await assert.rejects(h.complete(req()), /not restarted/);
    assert.match(statuses[statuses.length - 1].message ?? '', /not restarted/);
  } finally {
    await h.dispose();
  }
});

test('a completion during a hot swap is answered (by the old model or the new one)', async () => {
  const [from, to] = hasModel(DEFAULT) && hasModel(DENSE) ? [DEFAULT, DENSE] : ['tiny-test', 'tiny-test-dense'];
  const { h, statuses } = host();
  try {
    assert.equal((await h.start(from)).ok, true);
    const swap = h.switchModel(to);
    const during: Promise<CompleteResult>[] = [];
    for (let i = 0; i < 3; i++) {
      during.push(h.complete(req({ requestId: `during-${i}` })));
      await new Promise((r) => setTimeout(r, 100));
    }
    // Statuses still arrive while the worker is busy; the one before the swap ended names the old model.
    const sw = await swap;
    assert.equal(sw.ok, true, sw.error);
    for (const r of await Promise.all(during)) {
      assert.equal(r.error, undefined);
      assert.ok([from, to].includes(r.model), r.model);
    }
    assert.ok(statuses.some((s) => s.loading?.model === to && s.model === from), 'no status showed the old model serving while the new one loaded');
    assert.equal(h.activeModel?.name, to);
    assert.equal((await h.complete(req({ requestId: 'after' }))).model, to);
  } finally {
    await h.dispose();
  }
});

test('the bundled worker (dist/engineWorker.js) serves too', { skip: existsSync(path.join(REPO, 'dist/engineWorker.js')) ? false : 'dist/ not built' }, async () => {
  const { h } = host({ workerFile: path.join(REPO, 'dist/engineWorker.js'), threads: 1 });
  try {
    assert.equal((await h.start('tiny-test')).ok, true);
    const r = await h.complete(req());
    assert.equal(r.error, undefined);
    assert.ok(r.tokens.length > 0);
  } finally {
    await h.dispose();
  }
});
