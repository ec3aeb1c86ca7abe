import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { PrefillResult } from '../../../common/protocol';
import { readAheadLine } from '../../../extension/src/readAhead';

function prefill(over: Partial<PrefillResult>): PrefillResult {
  return { requestId: 'p1', model: 'm', state: 'read', promptTokens: 900, reusedTokens: 0, readTokens: 900, prefillMs: 3_240, totalMs: 3_300, ...over };
}

test('a prefill that read the prompt says how much and how long', () => {
  assert.equal(readAheadLine(prefill({})),
    'While the cursor rested, the model read 900 of its 900 prompt tokens in 3.2 s, so the first keystroke there answers from the cache (setting versatileffn.prefillOnRest).');
  assert.match(readAheadLine(prefill({ reusedTokens: 1_200, readTokens: 80, promptTokens: 1_280 }))!, /read 80 of its 1,280 prompt tokens in 3\.2 s, 1,200 were cached already/);
});

test('a prefill stopped by a newer request says its chunks were kept', () => {
  assert.match(readAheadLine(prefill({ state: 'superseded', readTokens: 256 }))!, /read 256 of its 900 prompt tokens in 3\.2 s before a newer request stopped it \(kept\)/);
});

test('nothing to tell: no prefill yet, or one that ran no token (the prompt was cached)', () => {
  assert.equal(readAheadLine(null), null);
  assert.equal(readAheadLine(prefill({ state: 'cached', readTokens: 0, reusedTokens: 900 })), null);
});
