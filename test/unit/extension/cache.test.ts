import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CompletionCache, typedThrough } from '../../../extension/src/completion/cache';
import { Lru } from '../../../extension/src/lru';

test('LRU evicts the least recently used entry', () => {
  const lru = new Lru<string, number>(2);
  lru.set('a', 1);
  lru.set('b', 2);
  assert.equal(lru.get('a'), 1); // a is now the most recent
  lru.set('c', 3);
  assert.equal(lru.get('b'), undefined);
  assert.equal(lru.get('a'), 1);
  assert.equal(lru.get('c'), 3);
  assert.equal(lru.size, 2);
});

test('LRU peek does not refresh an entry', () => {
  const lru = new Lru<string, number>(2);
  lru.set('a', 1);
  lru.set('b', 2);
  assert.equal(lru.peek('a'), 1);
  lru.set('c', 3);
  assert.equal(lru.peek('a'), undefined);
});

test('LRU rejects a capacity below one', () => {
  assert.throws(() => new Lru(0), RangeError);
});

test('typedThrough returns the rest only for a proper beginning', () => {
  assert.equal(typedThrough('return x;', ''), 'return x;');
  assert.equal(typedThrough('return x;', 'ret'), 'urn x;');
  assert.equal(typedThrough('return x;', 'rex'), undefined);
  assert.equal(typedThrough('return x;', 'return x;'), undefined);
  assert.equal(typedThrough('abc', 'abcd'), undefined);
});

test('cache answers the same place exactly', () => {
  const cache = new CompletionCache(10);
  cache.set('ts', 'const a = ', ';\n', { completion: '42', requestId: 'r1', model: 'm' });
  const hit = cache.get('ts', 'const a = ', ';\n');
  assert.deepEqual(hit && { rest: hit.rest, typed: hit.typed }, { rest: '42', typed: 0 });
  assert.equal(cache.get('py', 'const a = ', ';\n'), undefined, 'language is part of the key');
  assert.equal(cache.get('ts', 'const a = ', ')\n'), undefined, 'suffix is part of the key');
});

test('cache keeps showing the rest while the user types the completion', () => {
  const cache = new CompletionCache(10);
  cache.set('ts', 'function f() {\n  ', '\n}', { completion: 'return 42;', requestId: 'r1', model: 'm' });
  const hit = cache.get('ts', 'function f() {\n  ret', '\n}');
  assert.ok(hit);
  assert.equal(hit.rest, 'urn 42;');
  assert.equal(hit.typed, 3);
  assert.equal(hit.requestId, 'r1');
  assert.equal(cache.get('ts', 'function f() {\n  rex', '\n}'), undefined, 'diverged');
  assert.equal(cache.get('ts', 'function f() {\n  return 42;', '\n}'), undefined, 'typed all of it');
});

test('cache does not type through a newline', () => {
  const cache = new CompletionCache(10);
  cache.set('ts', 'a', '', { completion: '\nb = 1', requestId: 'r1', model: 'm' });
  assert.equal(cache.get('ts', 'a\n', ''), undefined);
});

test('cache ignores empty completions', () => {
  const cache = new CompletionCache(10);
  cache.set('ts', 'x', '', { completion: '', requestId: 'r1', model: 'm' });
  assert.equal(cache.get('ts', 'x', ''), undefined);
});
