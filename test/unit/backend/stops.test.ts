import assert from 'node:assert/strict';
import { test } from 'node:test';
import { indentWidth, repeatingTailAt, StopContext, StopRules } from '../../../backend/src/engine/stops';

function rules(prefix: string, suffix: string, over: Partial<StopContext> = {}) {
  return new StopRules({ prefix, suffix, maxTokens: 64, maxTimeMs: 10_000, startedAt: 0, confidenceCutoff: 0, ...over });
}
const step = (text: string, over: Partial<Parameters<StopRules['check']>[0]> = {}) =>
  ({ text, prevLength: Math.max(0, text.length - 1), prob: 0.9, isStop: false, count: 1, now: 1, ...over });

test('eot keeps everything before it', () => {
  assert.deepEqual(rules('x = ', '').check(step('1', { isStop: true, prevLength: 1 })), { reason: 'eot', keepChars: 1 });
});

test('max tokens and max time', () => {
  assert.equal(rules('a', '', { maxTokens: 3 }).check(step('abc', { count: 3 }))?.reason, 'max_tokens');
  assert.equal(rules('a', '', { maxTokens: 3 }).check(step('ab', { count: 2 })), null);
  assert.deepEqual(rules('a', '', { maxTimeMs: 50, startedAt: 100 }).check(step('ab', { now: 151 })), { reason: 'max_time', keepChars: 2 });
});

test('text after the cursor on its line: stop at the first newline', () => {
  const r = rules('foo(', ')\nnext');
  assert.ok(r.singleLine);
  assert.deepEqual(r.check(step('a, b\n  x')), { reason: 'single_line', keepChars: 4 });
  assert.equal(r.check(step('a, b')), null);
});

test('cursor at the end of its line: several lines allowed until one is indented less than the cursor', () => {
  const r = rules('def f():\n    x = 1\n    ', '\n');
  assert.equal(r.singleLine, false);
  assert.equal(r.cursorIndent, 4);
  assert.equal(r.check(step('y = 2\n    return y\n')), null);
  assert.deepEqual(r.check(step('y = 2\n    return y\ndef g')), { reason: 'dedent', keepChars: 18 });
  // Blank lines do not count as dedented.
  assert.equal(r.check(step('y = 2\n\n    z')), null);
});

test('cursor indent comes from the text before the cursor on its line', () => {
  assert.equal(rules('  if (x) {', '').cursorIndent, 2);
  assert.equal(rules('\t\tfoo', '').cursorIndent, 8);
  assert.equal(indentWidth(' \t'), 5);
});

test('a closing bracket that the rest of the line already supplies stops generation before it', () => {
  const r = rules('print(len(x', ')\n');
  assert.deepEqual(r.check(step('s)')), { reason: 'bracket_balance', keepChars: 1 });
  // Brackets the completion opened itself are fine.
  assert.equal(rules('foo(', ')').check(step('bar(1')), null);
  assert.equal(rules('foo(', ')').check(step('bar(1)')), null);
});

test('output repeating the first line of the suffix stops at that line', () => {
  const r = rules('function f() {\n  ', '\n  return total;\n}\n');
  assert.deepEqual(r.check(step('let a = 1;\n  return total;')), { reason: 'suffix_repeat', keepChars: 10 });
  assert.equal(r.check(step('let a = 1;\n  return')), null);
});

test('short suffix lines like } only count with the same indentation', () => {
  const r = rules('if (x) {\n  ', '\n}\n');
  assert.equal(r.check(step('a();\n  }')), null);
  assert.equal(r.check(step('a();\n}\n'))?.reason, 'dedent');
});

test('low-confidence cut drops the token', () => {
  const r = rules('x', '', { confidenceCutoff: 0.2 });
  assert.deepEqual(r.check(step('abc', { prob: 0.1, prevLength: 2 })), { reason: 'low_confidence', keepChars: 2 });
  assert.equal(r.check(step('abc', { prob: 0.3 })), null);
});

test('a degenerate loop stops generation, keeping one copy of the repeated unit', () => {
  assert.equal(repeatingTailAt('a, b = 0, 1, 1, 1, 1'), 'a, b = 0, 1'.length);
  assert.equal(repeatingTailAt('"type": "type": "type": "type": '), '"type": '.length);
  assert.equal(repeatingTailAt('x = 1, 1, 1'), null);                 // three copies are not a loop yet
  assert.equal(repeatingTailAt('return total;'), null);
  assert.equal(repeatingTailAt('\n        \n        \n        \n        '), null);  // indentation is not a loop
  assert.deepEqual(rules('x = [', '\n').check(step('0, 1, 1, 1, 1')), { reason: 'repetition', keepChars: 4 });
});
