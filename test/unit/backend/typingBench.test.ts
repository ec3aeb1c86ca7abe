// `vffn bench-typing`'s summary: keystrokes the editor's cache answered count as 0 ms waits; the
// engine's percentiles and run counts come from the requests that were sent.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseAb, summarize } from '../../../backend/src/tools/typingBench';

const key = (source: 'editor cache' | 'engine', totalMs: number, replayed = 0, runs = 0, shownMs = totalMs) => ({ k: 1, source, totalMs, shownMs, runs, replayed, completion: 'x' });

test('summary: the editor cache\'s answers, the engine\'s requests and what each keystroke waited', () => {
  const s = summarize('as shipped', [
    { changed: false, file: 'a.ts', coldMs: 5000, keys: [key('editor cache', 0), key('engine', 400, 0, 12), key('editor cache', 0)] },
    { changed: false, file: 'b.ts', coldMs: 4000, keys: [key('engine', 10, 9, 0), key('engine', 800, 0, 20, 300)] },
  ]);
  assert.equal(s.places, 2);
  assert.equal(s.keystrokes, 5);
  assert.equal(s.fromEditorCache, 2);
  assert.equal(s.engineRequests, 3);
  assert.equal(s.engineP50Ms, 400);
  assert.equal(s.engineP95Ms, 800);
  assert.equal(s.withReplayedPicks, 1);
  assert.equal(s.modelRuns, 32);
  assert.equal(s.engineShownP50Ms, 300);    // the 800 ms completion showed its first line at 300 ms
  assert.equal(s.engineShownP95Ms, 400);
  assert.equal(s.perKeystrokeP50Ms, 10);    // until ghost text: 0, 0, 10, 300, 400
  assert.equal(s.perKeystrokeP95Ms, 400);
});

test('--ab names one VFFN_ setting and its value', () => {
  assert.deepEqual(parseAb('VFFN_REUSE_PICKS=0'), ['VFFN_REUSE_PICKS', '0']);
  assert.deepEqual(parseAb('VFFN_HISTORY_DRAFT_TOKENS=4'), ['VFFN_HISTORY_DRAFT_TOKENS', '4']);
  assert.throws(() => parseAb('PATH=/tmp'), /--ab must be NAME=VALUE with a VFFN_ setting/);
  assert.throws(() => parseAb('VFFN_X'), /--ab must be NAME=VALUE/);
});
