import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CrashTracker } from '../../../extension/src/backoff';
import { debounceDelay, sleep, type CancelToken } from '../../../extension/src/completion/debounce';
import { LogTail, mostTellingLine } from '../../../extension/src/logTail';

test('crash tracker backs off exponentially, then gives up', () => {
  const t = new CrashTracker({ baseMs: 500, maxMs: 1500, maxCrashes: 4, windowMs: 60_000 });
  assert.deepEqual(t.record(0), { action: 'restart', delayMs: 500, crashesInWindow: 1 });
  assert.deepEqual(t.record(1000), { action: 'restart', delayMs: 1000, crashesInWindow: 2 });
  assert.deepEqual(t.record(2000), { action: 'restart', delayMs: 1500, crashesInWindow: 3 }, 'capped at maxMs');
  assert.deepEqual(t.record(3000), { action: 'giveUp', crashesInWindow: 4, windowMs: 60_000 });
});

test('crashes outside the window are forgotten', () => {
  const t = new CrashTracker({ baseMs: 100, maxMs: 10_000, maxCrashes: 3, windowMs: 1000 });
  t.record(0);
  t.record(500);
  const d = t.record(2000);
  assert.deepEqual(d, { action: 'restart', delayMs: 100, crashesInWindow: 1 });
  t.reset();
  assert.equal(t.record(2100).action, 'restart');
});

test('log tail keeps the last lines, joining partial writes', () => {
  const tail = new LogTail(3);
  tail.append('one\ntw');
  tail.append('o\nthree\n');
  tail.append('four\nfi');
  assert.deepEqual(tail.last(10), ['two', 'three', 'four', 'fi']);
  assert.deepEqual(tail.last(2), ['four', 'fi']);
});

test('debounce: explicit or cached requests do not wait', () => {
  assert.equal(debounceDelay({ explicit: true, cached: false, configuredMs: 200 }), 0);
  assert.equal(debounceDelay({ explicit: false, cached: true, configuredMs: 200 }), 0);
  assert.equal(debounceDelay({ explicit: false, cached: false, configuredMs: 200 }), 200);
  assert.equal(debounceDelay({ explicit: false, cached: false, configuredMs: -5 }), 0);
});

class Token implements CancelToken {
  isCancellationRequested = false;
  private listeners: (() => unknown)[] = [];
  onCancellationRequested(listener: () => unknown) {
    this.listeners.push(listener);
    return { dispose: () => (this.listeners = this.listeners.filter((l) => l !== listener)) };
  }
  cancel(): void {
    this.isCancellationRequested = true;
    for (const l of this.listeners) l();
  }
  get listenerCount(): number {
    return this.listeners.length;
  }
}

test('sleep resolves true after the delay and cleans up', async () => {
  const token = new Token();
  assert.equal(await sleep(5, token), true);
  assert.equal(token.listenerCount, 0);
});

test('sleep resolves false as soon as the request is superseded', async () => {
  const token = new Token();
  const started = Date.now();
  const p = sleep(10_000, token);
  setTimeout(() => token.cancel(), 5);
  assert.equal(await p, false);
  assert.ok(Date.now() - started < 1000);
  assert.equal(token.listenerCount, 0);
  assert.equal(await sleep(10, token), false, 'already cancelled');
});

test('the most telling log line is the last error, not a stack frame', () => {
  const log = [
    '[vffn] starting',
    "Error: Cannot find module '../bin/napi-v6/linux/x64/onnxruntime_binding.node'",
    '    at Module._resolveFilename (node:internal/modules/cjs/loader:1225:15)',
    '    at require (node:internal/modules/helpers:177:18)',
    '[extension] backend exited with code 1',
    'Node.js v20.20.2',
  ];
  assert.equal(mostTellingLine(log), "Error: Cannot find module '../bin/napi-v6/linux/x64/onnxruntime_binding.node'");
  assert.equal(mostTellingLine(['[vffn] a', '[vffn] b']), '[vffn] b');
  assert.equal(mostTellingLine([]), null);
});
