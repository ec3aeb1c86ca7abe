import assert from 'node:assert/strict';
import { test } from 'node:test';
import { EditSettler } from '../../../extension/src/completion/editSettle';

// t.mock's timers are reset when each test ends.
test('a file settles once its edits pause, with the last edit', (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const settled: Array<[string, number]> = [];
  const edits = new EditSettler<number>(1500, (key, line) => settled.push([key, line]));
  edits.edited('a', 1);
  t.mock.timers.tick(1000);
  edits.edited('a', 2);
  t.mock.timers.tick(1000);
  assert.deepEqual(settled, []);
  t.mock.timers.tick(500);
  assert.deepEqual(settled, [['a', 2]]);
  t.mock.timers.tick(5000);
  assert.deepEqual(settled, [['a', 2]]);
});

test('leaving for another file settles the others at once, not the one entered, and never twice', (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const settled: Array<[string, number]> = [];
  const edits = new EditSettler<number>(1500, (key, line) => settled.push([key, line]));
  edits.edited('a', 7);
  edits.edited('b', 3);
  edits.settleAllBut('b');
  assert.deepEqual(settled, [['a', 7]]);
  t.mock.timers.tick(1500);
  assert.deepEqual(settled, [['a', 7], ['b', 3]]);
  edits.edited('c', 1);
  edits.dispose();
  t.mock.timers.tick(5000);
  assert.equal(settled.length, 2);
});
