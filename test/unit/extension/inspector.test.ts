import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { CompleteResult, TokenInfo } from '../../../common/protocol';
import { difficultyBucket, meanFfnShare, meanLoops } from '../../../common/difficulty';
import { parseHostMessage, parseWebviewMessage } from '../../../common/webview';
import { runFromAnalysis, runFromCompletion } from '../../../extension/src/inspector/runs';
import { StatsPublisher, UsageStats, percentile } from '../../../extension/src/stats';

function token(text: string, loops: number[]): TokenInfo {
  return {
    id: 7,
    text,
    prob: 0.8,
    entropy: 0.5,
    routing: {
      loops,
      lambdas: loops.map((l) => (4 - l) / 4),
      experts: loops.map((l) => (l === 4 ? [-1, -1] : [1, 5]) as [number, number]),
      weights: loops.map((l) => (l === 4 ? [0, 0] : [0.6, 0.4]) as [number, number]),
    },
    computeVsDense: 1.5,
    computeVsMax: 0.5,
  };
}

const timings = { queueMs: 1, tokenizeMs: 1, prefillMs: 10, firstTokenMs: 14, firstLineMs: 0, decodeMs: 20, postprocessMs: 1, totalMs: 33, promptTokens: 100, reusedTokens: 90, generatedTokens: 5, replayedTokens: 0 };
const compute = { meanLoopsPerLayer: [2, 3], loopShare: [0.25, 0.25, 0.25, 0.25], vsDense: 1.6, vsMax: 0.55 };

export function completeResult(): CompleteResult {
  return {
    requestId: 'c1',
    completion: 'return 1;',
    tokens: [token('return', [1, 2]), token(' 1;', [4, 4])],
    stopReason: 'eot',
    trimmed: [{ rule: 'suffix_overlap', removedText: '}' }],
    timings,
    compute,
    model: 'tiny-test',
    provider: 'cpu',
  };
}

test('difficulty: mean loops and buckets', () => {
  assert.equal(meanLoops([1, 2, 3]), 2);
  assert.equal(meanLoops([]), 1);
  assert.equal(difficultyBucket([1, 1]), 1);
  assert.equal(difficultyBucket([2, 2]), 2);
  assert.equal(difficultyBucket([3, 3]), 3);
  assert.equal(difficultyBucket([4, 4]), 4);
});

test('a completion becomes a run that passes validation', () => {
  const run = runFromCompletion(completeResult(), { debounceMs: 200, contextMs: 1 });
  assert.equal(run.id, 'c1');
  assert.equal(run.text, 'return 1;');
  const parsed = parseHostMessage({ type: 'run', run });
  assert.ok(parsed.ok, parsed.ok ? '' : parsed.reason);
  // Through JSON, as postMessage would carry it.
  assert.ok(parseHostMessage(JSON.parse(JSON.stringify({ type: 'compare', runs: [run, run] }))).ok);
});

test('an analysis becomes a run without a stop reason', () => {
  const r = completeResult();
  const run = runFromAnalysis('a1', 'x = 1', { tokens: r.tokens, compute, model: 'tiny-test', timings }, 'cpu');
  assert.equal(run.source, 'analysis');
  assert.equal(run.stopReason, null);
  assert.ok(parseHostMessage({ type: 'run', run }).ok);
});

test('host messages of the wrong shape are rejected with a reason', () => {
  const good = runFromCompletion(completeResult());
  const cases: unknown[] = [
    null,
    'run',
    { type: 'nope' },
    { type: 'run' },
    { type: 'run', run: { ...good, tokens: 'abc' } },
    { type: 'run', run: { ...good, tokens: [{ ...good.tokens[0], prob: 'high' }] } },
    { type: 'run', run: { ...good, tokens: [{ ...good.tokens[0], routing: { ...good.tokens[0]!.routing, lambdas: [0] } }] } },
    { type: 'run', run: { ...good, timings: { ...timings, totalMs: Number.NaN } } },
    { type: 'run', run: { ...good, source: 'other' } },
    { type: 'compare', runs: [good, { ...good, compute: null }] },
    { type: 'stats', usage: [{ model: 1 }], backend: [] },
    { type: 'status', text: 5 },
  ];
  for (const c of cases) {
    const parsed = parseHostMessage(c);
    assert.equal(parsed.ok, false, `should reject ${JSON.stringify(c)?.slice(0, 80)}`);
    if (!parsed.ok) assert.ok(parsed.reason.length > 0);
  }
});

test('webview messages are checked against the command list', () => {
  assert.deepEqual(parseWebviewMessage({ type: 'ready' }), { ok: true, value: { type: 'ready' } });
  assert.deepEqual(parseWebviewMessage({ type: 'command', command: 'showLogs' }), { ok: true, value: { type: 'command', command: 'showLogs' } });
  assert.equal(parseWebviewMessage({ type: 'command', command: 'workbench.action.quit' }).ok, false);
  assert.equal(parseWebviewMessage({ type: 'command' }).ok, false);
  assert.equal(parseWebviewMessage({ type: 'eval', code: '1' }).ok, false);
  assert.equal(parseWebviewMessage([]).ok, false);
  const long = parseWebviewMessage({ type: 'rejected', reason: 'x'.repeat(5000) });
  assert.ok(long.ok && long.value.type === 'rejected' && long.value.reason.length === 500);
});

test('usage stats count each shown request once and compute the acceptance rate', () => {
  const s = new UsageStats();
  s.shown('m', 'r1');
  s.shown('m', 'r1');
  s.shown('m', 'r2');
  s.accepted('m');
  s.latency('m', 100);
  s.latency('m', 300);
  const [summary] = s.summary();
  assert.deepEqual(summary, { model: 'm', shown: 2, accepted: 1, acceptanceRate: 0.5, latencyP50Ms: 100, latencyP95Ms: 300 });
  const restored = UsageStats.fromJSON(JSON.parse(JSON.stringify(s.toJSON())));
  assert.deepEqual(restored.summary(), s.summary());
  assert.deepEqual(UsageStats.fromJSON({ m: { shown: 'x' } }).summary(), []);
  assert.deepEqual(UsageStats.fromJSON(null).summary(), []);
});

test('percentile', () => {
  assert.equal(percentile([], 0.5), null);
  assert.equal(percentile([5, 1, 3], 0.5), 3);
  assert.equal(percentile([1, 2, 3, 4], 0.95), 4);
});

test('the stats publisher saves and shows at most once per delay, and saves on dispose', async () => {
  const stats = new UsageStats();
  const saved: unknown[] = [];
  const shown: unknown[] = [];
  const p = new StatsPublisher({
    stats,
    save: (json) => saved.push(JSON.parse(JSON.stringify(json))),
    backendStats: async () => [{ model: 'm', decodeTokensPerSecond: 10, latencyP50Ms: 5 }],
    show: (usage, backend) => shown.push({ usage, backend }),
  }, 20);
  stats.shown('m', 'r1');
  p.schedule();
  p.schedule();
  await new Promise((r) => setTimeout(r, 60));
  assert.equal(saved.length, 1);
  assert.equal(shown.length, 1);
  assert.deepEqual((shown[0] as { backend: unknown[] }).backend, [{ model: 'm', decodeTokensPerSecond: 10, latencyP50Ms: 5 }]);
  p.schedule();
  p.dispose();
  await new Promise((r) => setTimeout(r, 40));
  assert.equal(saved.length, 2, 'dispose saved once and cancelled the pending timer');
  assert.equal(shown.length, 1);
});

test('non-finite numbers from the backend are repaired, not fatal', () => {
  const r = completeResult();
  const bad = { ...r, tokens: [{ ...r.tokens[0]!, entropy: null as unknown as number, prob: Number.NaN }, r.tokens[1]!] };
  const run = runFromCompletion(bad);
  assert.equal(run.repaired, 2);
  assert.equal(run.tokens[0]!.entropy, 0);
  assert.ok(parseHostMessage(JSON.parse(JSON.stringify({ type: 'run', run }))).ok);
});

test('upcycled runs carry the FFN share per token and layer, and its mean', () => {
  const r = completeResult();
  const withShare = {
    ...r,
    tokens: r.tokens.map((t, k) => ({ ...t, routing: { ...t.routing, ffnShare: [0.5 + k / 10, 0.25] } })),
    compute: { ...r.compute, meanFfnShare: 0.4 },
  };
  const run = runFromCompletion(JSON.parse(JSON.stringify(withShare)));
  assert.deepEqual(run.tokens.map((t) => t.routing.ffnShare), [[0.5, 0.25], [0.6, 0.25]]);
  assert.equal(run.compute.meanFfnShare, 0.4);
  assert.equal(meanFfnShare(run.tokens[0]!.routing.ffnShare), 0.375);
  assert.equal(meanFfnShare(undefined), null);
  assert.ok(parseHostMessage(JSON.parse(JSON.stringify({ type: 'run', run }))).ok);
  // Models without the share keep runs without it.
  assert.equal(runFromCompletion(r).tokens[0]!.routing.ffnShare, undefined);
  assert.equal('meanFfnShare' in runFromCompletion(r).compute, false);
  const wrongLength = { ...run, tokens: [{ ...run.tokens[0]!, routing: { ...run.tokens[0]!.routing, ffnShare: [0.5] } }] };
  const parsed = parseHostMessage({ type: 'run', run: wrongLength });
  assert.ok(!parsed.ok && /ffnShare/.test(parsed.reason));
});
