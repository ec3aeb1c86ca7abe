import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { StatusParams } from '../../../common/protocol';
import { describeLoading } from '../../../extension/src/loadProgress';

const status = (over: Partial<StatusParams>): StatusParams => ({ state: 'loading', model: null, provider: null, ...over });

test('first load: the model, its step and whole seconds', () => {
  const d = describeLoading(status({ loading: { model: 'm', step: 'creating session', elapsedMs: 2999 } }))!;
  assert.equal(d.text, 'VFFN $(sync~spin) loading m · creating session · 2 s');
  assert.match(d.tooltip, /^Loading m: creating session \(2 s\)\.$/);
});

test('hot swap: the old model is named first and keeps answering', () => {
  const d = describeLoading(status({ state: 'ready', model: 'old', provider: 'cpu', loading: { model: 'new', step: 'verifying files', elapsedMs: 12_400 } }))!;
  assert.equal(d.text, 'VFFN $(sync~spin) old → new · verifying files · 12 s');
  assert.match(d.tooltip, /old on cpu keeps answering until it is ready/);
});

test('a provider change reloads the same model; no load: nothing to describe', () => {
  const d = describeLoading(status({ model: 'm', provider: 'cpu', loading: { model: 'm', step: 'creating session', elapsedMs: 0 } }))!;
  assert.equal(d.text, 'VFFN $(sync~spin) loading m · creating session · 0 s');
  assert.match(d.tooltip, /keeps answering on cpu meanwhile/);
  assert.equal(describeLoading(status({ state: 'ready', model: 'm' })), null);
  assert.equal(describeLoading(null), null);
});
