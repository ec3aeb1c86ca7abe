// Which of the previous request's picks a new request may take without running the model
// (engine/replay.ts): the healed text left to spell before each must be what it was when it was picked.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { GeneratedToken } from '../../../backend/src/engine/generator';
import { pickRecords, usablePicks } from '../../../backend/src/engine/replay';
import { healRest } from '../../../backend/src/engine/tokenHealing';

const VOCAB = [' return', ' re', 'turn', ' x', ';', '\n', ' r'];
const tok = { tokenText: (id: number) => VOCAB[id] };
const id = (text: string) => VOCAB.indexOf(text);
const routing = { loops: [], lambdas: [], experts: [], weights: [] };
const generated = (...texts: string[]): GeneratedToken[] =>
  texts.map((t) => ({ id: id(t), prob: 0.9, entropy: 0.1, routing, pickedAt: 0, stepMs: 0, isStop: false }));

test('healRest: what is left of the healed text after the picks so far', () => {
  assert.equal(healRest(tok, ' re', []), ' re');
  assert.equal(healRest(tok, ' re', [id(' r')]), 'e');
  assert.equal(healRest(tok, ' re', [id(' return')]), null);
  assert.equal(healRest(tok, ' re', [id(' r'), id('turn')]), null);
  assert.equal(healRest(tok, null, [id(' r')]), null);
});

test('a request\'s picks are recorded with the healed text each still had to spell', () => {
  const recs = pickRecords(tok, generated(' r', 'turn', ' x'), ' re');
  assert.deepEqual(recs.map((r) => r.heal), [' re', 'e', null]);
  assert.deepEqual(recs.map((r) => r.id), [id(' r'), id('turn'), id(' x')]);
});

test('usable picks: the first always (it is picked again), the rest while the healing before them matches', () => {
  // Recorded after healing " " (a space typed): " return" spelled it; nothing held the picks after.
  const known = pickRecords(tok, generated(' return', ' x', ';', '\n'), ' ');
  // The next keystroke typed "r": healing " r" now. " return" is picked again; the rest match (no healing left).
  assert.deepEqual(usablePicks(tok, known, ' r').map((r) => r.id), known.map((r) => r.id));
  // Typed nothing new and nothing is healed: the same.
  assert.deepEqual(usablePicks(tok, known, null).length, 4);
  // A request still healing " re" after " r": the second pick was made with nothing held; not usable.
  const split = pickRecords(tok, generated(' r', 'turn', ';'), null);
  assert.deepEqual(usablePicks(tok, split, ' re').map((r) => r.id), [id(' r')]);
  assert.deepEqual(usablePicks(tok, [], ' r'), []);
});
