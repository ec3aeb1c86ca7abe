import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ChunkRing, chunkAround, similarity } from '../../../extension/src/completion/ringBuffer';
import { isBlank, shapeCompletion, wantsMultiline } from '../../../extension/src/completion/shape';

const chunk = (n: number, tag = 'x'): string => Array.from({ length: n }, (_, i) => `${tag} line ${i}`).join('\n');

test('similarity is Jaccard over line sets', () => {
  assert.equal(similarity(['a', 'b'], ['a', 'b']), 1);
  assert.equal(similarity(['a', 'b'], ['c', 'd']), 0);
  assert.equal(similarity(['a', 'b', 'c'], ['a', 'b', 'd']), 0.5);
});

test('ring keeps the newest chunks within capacity', () => {
  const ring = new ChunkRing({ capacity: 2, duplicateThreshold: 0.9 });
  assert.ok(ring.add('file:///a', chunk(5, 'a')));
  assert.ok(ring.add('file:///b', chunk(5, 'b')));
  assert.ok(ring.add('file:///c', chunk(5, 'c')));
  assert.equal(ring.size, 2);
  assert.deepEqual(ring.pick(10_000).map((c) => c.uri), ['file:///c', 'file:///b']);
});

test('ring evicts near-duplicates and skips tiny chunks', () => {
  const ring = new ChunkRing({ capacity: 8, duplicateThreshold: 0.9 });
  const base = chunk(20, 'a');
  ring.add('file:///a', base);
  ring.add('file:///a', `${base}\nextra line`); // 20 of 21 lines shared: a duplicate
  assert.equal(ring.size, 1);
  assert.ok(ring.pick(10_000)[0]!.text.endsWith('extra line'));
  assert.equal(ring.add('file:///b', 'one\n\n two'), false);
  assert.equal(ring.size, 1);
});

test('ring pick respects the character budget and excludes the current file', () => {
  const ring = new ChunkRing({ capacity: 8, duplicateThreshold: 0.9 });
  ring.add('file:///a', chunk(5, 'a'));
  ring.add('file:///b', chunk(5, 'b'));
  ring.add('file:///c', chunk(5, 'c'));
  const size = chunk(5, 'a').length;
  assert.deepEqual(ring.pick(size * 2).map((c) => c.uri), ['file:///c', 'file:///b']);
  assert.deepEqual(ring.pick(10_000, 'file:///c').map((c) => c.uri), ['file:///b', 'file:///a']);
});

test('chunkAround clamps to the document', () => {
  const lines = Array.from({ length: 10 }, (_, i) => String(i));
  assert.equal(chunkAround(lines, 0, 4), '0\n1\n2\n3');
  assert.equal(chunkAround(lines, 9, 4), '6\n7\n8\n9');
  assert.equal(chunkAround(lines, 5, 4), '3\n4\n5\n6');
  assert.equal(chunkAround(lines.slice(0, 2), 1, 4), '0\n1');
});

test('multi-line at the end of a line, single line when code follows', () => {
  assert.equal(wantsMultiline('function f() {', '', 'auto'), true);
  assert.equal(wantsMultiline('foo(', ')', 'auto'), true, 'closing brackets do not count');
  assert.equal(wantsMultiline('x = ', ' + y', 'auto'), false);
  assert.equal(wantsMultiline('x = ', ' + y', 'always'), true);
  assert.equal(wantsMultiline('x', '', 'never'), false);
});

test('shapeCompletion cuts to the first line when one line is wanted', () => {
  assert.equal(shapeCompletion('a\nb', false), 'a');
  assert.equal(shapeCompletion('a\nb', true), 'a\nb');
  assert.equal(shapeCompletion('a', false), 'a');
  assert.ok(isBlank(' \n\t'));
  assert.ok(!isBlank(' x'));
});
