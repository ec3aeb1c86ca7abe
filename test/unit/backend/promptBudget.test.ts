// The prompt budget follows the measured prefill speed, and the measurement is made once per model and machine.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import { PREFILL_CHUNK } from '../../../backend/src/engine/generator';
import { loadModel, LoadedModel, releaseModel } from '../../../backend/src/engine/loadedModel';
import { budgetFor, COLD_PROMPT_MS, MIN_PROMPT_TOKENS, observePrefill, promptBudget } from '../../../backend/src/engine/promptBudget';
import { TINY } from './helpers';

test('budget: what prefills in COLD_PROMPT_MS, in steps of 64, within [MIN_PROMPT_TOKENS, cap]', () => {
  assert.equal(COLD_PROMPT_MS, 4000);
  assert.equal(budgetFor(150, 1024), 576);          // 600 tokens in 4 s, rounded down to 64s
  assert.equal(budgetFor(266, 1024), 1024);         // the 2-core dev machine: the whole cap
  assert.equal(budgetFor(50, 1024), MIN_PROMPT_TOKENS);    // a slow machine still sees 256 tokens
  assert.equal(budgetFor(5000, 1024), 1024);        // a fast one is capped
  assert.equal(budgetFor(5000, 200), 200);          // the cap wins over the minimum too
  assert.equal(budgetFor(NaN, 1024), MIN_PROMPT_TOKENS);
});

let tiny: LoadedModel;
before(async () => {
  tiny = await loadModel('tiny-test', TINY, 'cpu', 1);
});
after(async () => {
  await releaseModel(tiny);
});

test('measured once, then read from the cache file', async () => {
  const file = path.join(mkdtempSync(path.join(os.tmpdir(), 'vffn-budget-')), 'calibration.json');
  const cap = tiny.manifest.architecture.context_length - 1;
  const first = await promptBudget(tiny.session, tiny.manifest, 1, cap, { cacheFile: file });
  assert.equal(first.cached, false);
  assert.ok(first.prefillTokensPerSecond > 0);
  assert.equal(first.tokens, budgetFor(first.prefillTokensPerSecond, cap));
  const saved = JSON.parse(readFileSync(file, 'utf8'));
  assert.equal(Object.keys(saved).length, 1);
  const again = await promptBudget(tiny.session, tiny.manifest, 1, cap, { cacheFile: file });
  assert.equal(again.cached, true);
  assert.equal(again.tokens, budgetFor(Object.values<{ prefillTokensPerSecond: number }>(saved)[0].prefillTokensPerSecond, cap));
});

test('a loaded model carries its budget, never above the context', () => {
  assert.ok(tiny.promptTokens >= 16 && tiny.promptTokens < tiny.manifest.architecture.context_length);
});

test('a faster real prefill grows the budget (and the cache); slower or short ones change nothing', () => {
  const file = path.join(mkdtempSync(path.join(os.tmpdir(), 'vffn-budget-')), 'calibration.json');
  const m = { promptTokens: budgetFor(60, 1024), prefillTokensPerSecond: 60, promptCap: 1024, budgetKey: 'k' };
  assert.equal(m.promptTokens, MIN_PROMPT_TOKENS);
  assert.equal(observePrefill(m, PREFILL_CHUNK - 1, 100, file), false);   // shorter than a chunk: not a measurement
  assert.equal(observePrefill(m, 300, 6000, file), false);        // 50 tok/s: slower, kept
  assert.equal(observePrefill(m, 300, 2000, file), true);         // 150 tok/s: the budget grows to 576
  assert.equal(m.promptTokens, 576);
  assert.equal(JSON.parse(readFileSync(file, 'utf8')).k.prefillTokensPerSecond, 150);
  assert.equal(observePrefill(m, 300, 1950, file), false);        // within a tenth: no churn
  const fixed = { promptTokens: 1024, prefillTokensPerSecond: 0, promptCap: 1024 };
  assert.equal(observePrefill(fixed, 1000, 100, file), false);    // VFFN_MAX_PROMPT_TOKENS: nothing learned
});
