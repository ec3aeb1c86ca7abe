// The `vffn` CLI, spawned as a process.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { REPO, tempDir, TINY } from './helpers';

const CLI = path.join(REPO, 'backend/src/cli.ts');
const run = (args: string[], input = '') =>
  spawnSync(process.execPath, ['--import', 'tsx', CLI, ...args], { cwd: REPO, input, encoding: 'utf8', timeout: 60_000 });

test('complete --jsonl answers every line, in order, with per-layer loops and timings', () => {
  const lines = [
    { prefix: 'def add(a, b):\n    return a', suffix: '\n', language: 'python', maxTokens: 5 },
    { prefix: 'let x = ', suffix: ';\n', language: 'typescript', maxTokens: 3 },
  ];
  const input = `${lines.map((l) => JSON.stringify(l)).join('\n')}\nnot json\n${JSON.stringify({ prefix: '', suffix: '' })}\n`;
  const r = run(['complete', '--jsonl', '--model', TINY], input);
  assert.equal(r.status, 0, r.stderr);
  const out = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(out.length, 4);
  assert.ok(out[0].tokens.length <= 5 && out[0].tokens.length > 0);
  assert.equal(out[0].tokens[0].loops.length, 2);
  assert.equal(typeof out[0].timings.firstTokenMs, 'number');
  assert.equal(typeof out[1].completion, 'string');
  assert.match(out[2].error, /line 3 is not JSON/);
  assert.equal(out[3].stopReason, 'empty_input');
});

test('complete FILE --line --col prints the completion and JSON telemetry; positions outside the file are refused', () => {
  const file = path.join(REPO, 'backend/src/engine/stops.ts');
  const r = run(['complete', file, '--line', '5', '--col', '3', '--model', TINY, '--max-tokens', '4']);
  assert.equal(r.status, 0, r.stderr);
  const last = JSON.parse(r.stdout.trim().split('\n').pop()!);
  assert.ok(last.tokens.length <= 4);
  const bad = run(['complete', file, '--line', '99999', '--col', '1', '--model', TINY]);
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /--line 99999 is outside it/);
});

test('a missing model folder is a clear error', () => {
  const r = run(['complete', '--jsonl', '--model', path.join(REPO, 'models', 'no-such-model')], '');
  assert.equal(r.status, 2);
  assert.match(r.stderr, /no-such-model/);
});

test('bench runs on a couple of samples and writes its JSON and markdown reports', () => {
  const out = path.join(tempDir(), 'bench.json');
  const r = run(['bench', '--model', TINY, '--samples', '2', '--out', out]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /\| tiny-test \(versatile\) \| cpu \|/);
  const j = JSON.parse(readFileSync(out, 'utf8'));
  assert.equal(j.models[0].model, 'tiny-test');
  assert.ok(j.models[0].cold.totalMs.p50 > 0);
  assert.ok(existsSync(out.replace(/\.json$/, '.md')));
});

test('bench-drafts compares completions as shipped and with one drafting setting changed, and writes its reports', () => {
  const out = path.join(tempDir(), 'drafts.json');
  const r = run(['bench-drafts', '--model', TINY, '--samples', '2', '--out', out]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /\| next character of the file \| 2 \|/);
  const j = JSON.parse(readFileSync(out, 'utf8'));
  assert.equal(j.model, 'tiny-test');
  assert.equal(j.setting, 'VFFN_HISTORY_DRAFT_TOKENS=0');
  const [cold, next] = j.summary;
  assert.equal(cold.scenario, 'nothing typed (cold, empty KV cache)');
  assert.equal(next.requests, 2);
  assert.equal(next.shipped.tokens, next.changed.tokens);
  // The fp32 test model: drafts give exactly greedy decoding's output, in no more runs.
  assert.equal(cold.sameCompletion, 2);
  assert.equal(next.sameCompletion, 2);
  assert.ok(next.shipped.runs <= next.changed.runs, JSON.stringify(next));
  assert.ok(cold.shipped.decodeMsPerToken > 0, JSON.stringify(cold));
  const bad = run(['bench-drafts', '--model', TINY, '--ab', 'DRAFTS', '--out', out]);
  assert.notEqual(bad.status, 0);
  assert.match(bad.stderr, /--ab must be NAME=VALUE/);
  assert.ok(existsSync(out.replace(/\.json$/, '.md')));
});
