import assert from 'node:assert/strict';
import { mock, test } from 'node:test';
import { EditSettler } from '../../../extension/src/completion/editSettle';

test('a file settles once its edits pause, with the last edit', () => {
  mock.timers.enable({ apis: ['setTimeout'] });
  try {
    const settled: Array<[string, number]> = [];
    const edits = new EditSettler<number>(1500, (key, line) => settled.push([key, line]));
    edits.edited('a', 1);
    mock.timers.tick(1000);
    edits.edited('a', 2);
    mock.timers.tick(1000);
    assert.deepEqual(settled, []);
    mock.timers.tick(500);
    assert.deepEqual(settled, [['a', 2]]);
    mock.timers.tick(5000);
    assert.deepEqual(settled, [['a', 2]]);
  } finally {
    mock.timers.reset();
  }
});

test('leaving for another file settles the others at once, not the one entered, and never twice', () => {
  mock.timers.enable({ apis: ['setTimeout'] });
  try {
    const settled: Array<[string, number]> = [];
    const edits = new EditSettler<number>(1500, (key, line) => settled.push([key, line]));
    edits.edited('a', 7);
    edits.edited('b', 3);
    edits.settleAllBut('b');
    assert.deepEqual(settled, [['a', 7]]);
    mock.timers.tick(1500);
    assert.deepEqual(settled, [['a', 7], ['b', 3]]);
    edits.edited('c', 1);
    edits.dispose();
    mock.timers.tick(5000);
    assert.equal(settled.length, 2);
  } finally {
    mock.timers.reset();
  }
});
