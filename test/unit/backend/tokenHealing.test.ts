import assert from 'node:assert/strict';
import { test } from 'node:test';
import { draftSpellsHeal, healingProcessor, healPrompt, HealingTokenizer, VocabIndex } from '../../../backend/src/engine/tokenHealing';

// A vocabulary shaped like a byte-level BPE's: words with their leading space, pieces of them,
// a lone half of a multi-byte character (decodes to U+FFFD) and a control token.
const VOCAB = [' return', ' ret', ' re', 'urn', 't', ' ', '   ', 'x', '\uFFFD', '<|fim_middle|>', ' returns', '\n', ' r'];
const tok: HealingTokenizer = { vocabSize: VOCAB.length, controlIds: [9], tokenText: (id) => VOCAB[id] };
const id = (text: string) => VOCAB.indexOf(text);
const sorted = (ids: number[]) => [...ids].sort((a, b) => a - b);

test('candidates: every token that starts with the text, and every token that is a shorter prefix of it', () => {
  const index = new VocabIndex(tok);
  assert.deepEqual(sorted(index.candidates(' ret')), sorted([id(' ret'), id(' return'), id(' returns'), id(' re'), id(' r'), id(' ')]));
  assert.deepEqual(sorted(index.candidates('urn')), [id('urn')]);
  assert.deepEqual(index.candidates('zzz'), []);
});

test('candidates never offer control tokens or lone pieces of a character', () => {
  const index = new VocabIndex(tok);
  assert.ok(!index.candidates('<|fim').includes(id('<|fim_middle|>')));
  assert.ok(!index.candidates('\uFFFD').includes(id('\uFFFD')));
});

test('healPrompt drops the last token when it can be spelled again, and not otherwise', () => {
  assert.deepEqual(healPrompt(tok, [9, id('   '), id(' ret')], 2), { ids: [9, id('   ')], text: ' ret' });
  // A line break, a control token, a piece of a character: left in the prompt.
  assert.equal(healPrompt(tok, [9, id('\n')], 1), null);
  assert.equal(healPrompt(tok, [1, 9], 1), null);
  assert.equal(healPrompt(tok, [9, id('\uFFFD')], 1), null);
  // No prefix in the prompt (an empty prefix): nothing of it to heal.
  assert.equal(healPrompt(tok, [9, id('x')], 0), null);
});

function pick(processor: ReturnType<typeof healingProcessor>, generated: number[], favourite: number): number {
  const logits = new Float32Array(VOCAB.length).fill(0);
  logits[favourite] = 10;
  processor(logits, generated);
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
  return logits[best] === -Infinity ? -1 : best;
}

test('the first picks spell the healed text again, then anything goes', () => {
  const index = new VocabIndex(tok);
  const heal = healingProcessor(index, tok, ' ret');
  // The model's favourite "x" does not spell " ret": it is held out, a token that does is picked.
  assert.ok([id(' ret'), id(' return'), id(' returns'), id(' re'), id(' r'), id(' ')].includes(pick(heal, [], id('x'))));
  // A token that spells all of it and more is allowed ...
  assert.equal(pick(heal, [], id(' return')), id(' return'));
  // ... and after a shorter piece (" re"), the rest ("t") is held the same way.
  assert.equal(pick(heal, [id(' re')], id('x')), id('t'));
  // Once the healed text is spelled, the processor leaves the logits alone.
  assert.equal(pick(heal, [id(' return')], id('x')), id('x'));
  assert.equal(pick(heal, [id(' re'), id('t')], id('x')), id('x'));
});

test('the index reads the vocabulary once through pieceText (uncached), not tokenText', () => {
  let cached = 0;
  const counting: HealingTokenizer = { ...tok, tokenText: (i) => { cached++; return VOCAB[i]; }, pieceText: (i) => VOCAB[i] };
  const index = new VocabIndex(counting);
  assert.equal(cached, 0);
  assert.deepEqual(sorted(index.candidates(' ret')), sorted(new VocabIndex(tok).candidates(' ret')));
});

test('a draft is worth checking only if its first tokens can spell the healed text', () => {
  assert.equal(draftSpellsHeal(tok, [id(' returns'), id('x')], ' ret'), true);   // starts with it
  assert.equal(draftSpellsHeal(tok, [id(' re'), id('t'), id('urn')], ' ret'), true);
  assert.equal(draftSpellsHeal(tok, [id(' re')], ' ret'), true);                 // the start of it: the next token decides
  assert.equal(draftSpellsHeal(tok, [id(' r'), id('x')], ' ret'), false);
  assert.equal(draftSpellsHeal(tok, [id('x'), id(' return')], ' ret'), false);
  assert.equal(draftSpellsHeal(tok, [], ' ret'), true);
});
