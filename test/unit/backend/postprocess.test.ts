import assert from 'node:assert/strict';
import { test } from 'node:test';
import { clashesWithRestOfLine, postprocess, suffixOverlap } from '../../../backend/src/engine/postprocess';

test('trims the part of the completion that the suffix already has', () => {
  const r = postprocess('a, b)', { prefix: 'f(', suffix: ')\n' });
  assert.equal(r.text, 'a, b');
  assert.deepEqual(r.trimmed, [{ rule: 'suffix_overlap', removedText: ')' }]);
  assert.equal(suffixOverlap('x = foo();', 'foo();\nbar'), 6);
  assert.equal(suffixOverlap('abc  ', '  \n'), 0, 'whitespace-only overlap is not trimmed');
});

test('drops a completion equal to the rest of the line', () => {
  const r = postprocess(' value;', { prefix: 'return', suffix: ' value;\n}' });
  assert.equal(r.text, '');
  assert.equal(r.trimmed[0].rule, 'equals_rest_of_line');
});

test('drops lines that repeat the lines after the cursor', () => {
  const r = postprocess('x += 1;\n  console.log(x);\n  more();', { prefix: 'function f() {\n  ', suffix: '\n  console.log(x);\n}' });
  assert.equal(r.text, 'x += 1;');
  assert.equal(r.trimmed[0].rule, 'repeats_next_lines');
});

test('drops a completion that repeats the line above, and repeated generated lines', () => {
  const above = postprocess('foo(bar);', { prefix: '  foo(bar);\n  ', suffix: '' });
  assert.equal(above.text, '');
  assert.equal(above.trimmed[0].rule, 'duplicate_line');
  const twice = postprocess('a = compute();\nb = other();\nb = other();', { prefix: '', suffix: '' });
  assert.equal(twice.text, 'a = compute();\nb = other();');
  assert.deepEqual(twice.trimmed, [{ rule: 'duplicate_line', removedText: '\nb = other();' }]);
  // Short lines such as } are not called duplicates.
  assert.equal(postprocess('}\n}', { prefix: '', suffix: '' }).text, '}\n}');
});

test('trailing whitespace goes, and a clean completion is untouched', () => {
  const r = postprocess('x = 1  \n  ', { prefix: '', suffix: '' });
  assert.equal(r.text, 'x = 1');
  assert.deepEqual(r.trimmed, [{ rule: 'trailing_whitespace', removedText: '  \n  ' }]);
  assert.deepEqual(postprocess('x = 1', { prefix: 'let ', suffix: '\n' }), { text: 'x = 1', trimmed: [] });
});

test('drops a completion that clashes with the code after the cursor on its line (captured from Qwen2.5-Coder)', () => {
  // The cursor before an existing statement: the model wrote a variant of it.
  const rewrite = postprocess('while (i < n && ids[i] !== this.ids[i]) {', { prefix: '    let i = 0;\n    ', suffix: 'while (i < n && ids[i] === this.ids[i]) i++;\n    return i;\n' });
  assert.deepEqual(rewrite, { text: '', trimmed: [{ rule: 'clashes_with_rest_of_line', removedText: 'while (i < n && ids[i] !== this.ids[i]) {' }] });
  // The cursor in the indentation of a line: text would land before the indentation.
  const indent = postprocess('            return', { prefix: '        case str() | bytes():\n', suffix: '            out = message\n' });
  assert.equal(indent.text, '');
  assert.equal(indent.trimmed[0].rule, 'clashes_with_rest_of_line');
  // Ordinary insertions before code stay.
  assert.equal(clashesWithRestOfLine('x, ', 'foo(', 'y)'), false);
  assert.equal(clashesWithRestOfLine('const total = ', '  ', 'items.length;'), false);
  assert.equal(clashesWithRestOfLine('await ', '  return ', 'fetchAll(urls);'), false);
  assert.equal(clashesWithRestOfLine('fetchAll(urls).then(', '  return ', 'fetchAll(urls);'), true);
  assert.equal(postprocess('x', { prefix: 'a = ', suffix: '\n' }).text, 'x');
});
