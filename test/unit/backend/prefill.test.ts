// Reading a prompt ahead (vffn/prefill): the scheduler's background priority, and the engine's
// prefill through real onnxruntime-node with the checked-in tiny model.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { CompleteParams } from '../../../common/protocol';
import { Engine } from '../../../backend/src/engine/engine';
import { Scheduler, type JobControl } from '../../../backend/src/engine/scheduler';
import { MODELS } from './helpers';

/** A job that records when it ran and how it ended; `steps` awaits between which it checks for a stop. */
function job(log: string[], name: string, steps = 1) {
  return async (ctl: JobControl) => {
    for (let i = 0; i < steps; i++) {
      await new Promise((r) => setImmediate(r));
      const why = ctl.stopReason();
      if (why) return `${name}:${why}`;
    }
    log.push(name);
    return `${name}:done`;
  };
}
const ended = (name: string) => (why: string) => `${name}:${why}`;

test('scheduler: a background job never supersedes a foreground one; a foreground one supersedes it', async () => {
  const s = new Scheduler();
  const log: string[] = [];
  const fg = s.submit('k', undefined, job(log, 'fg', 3), ended('fg'));
  const bg = s.submit('k', undefined, job(log, 'bg'), ended('bg'), 'background');
  assert.deepEqual(await Promise.all([fg, bg]), ['fg:done', 'bg:done']);
  assert.deepEqual(log, ['fg', 'bg']);
  // Running background job: a newer foreground one stops it at its next check.
  const running = s.submit('k', undefined, job(log, 'bg2', 5), ended('bg2'), 'background');
  await new Promise((r) => setImmediate(r));
  const fg2 = s.submit('k', undefined, job(log, 'fg2'), ended('fg2'));
  assert.deepEqual(await Promise.all([running, fg2]), ['bg2:superseded', 'fg2:done']);
  // Any foreground job, whatever its key (an analysis, another model's completion), stops a running background one.
  const bg3 = s.submit('k', undefined, job(log, 'bg3', 5), ended('bg3'), 'background');
  await new Promise((r) => setImmediate(r));
  const other = s.submit(null, undefined, job(log, 'other'), ended('other'));
  assert.deepEqual(await Promise.all([bg3, other]), ['bg3:superseded', 'other:done']);
});

test('scheduler: waiting foreground jobs run before any background job; a newer background job supersedes an older one', async () => {
  const s = new Scheduler();
  const log: string[] = [];
  const first = s.submit(null, undefined, job(log, 'first', 2), ended('first'));
  const bgOld = s.submit('k', undefined, job(log, 'bgOld'), ended('bgOld'), 'background');
  const fg = s.submit('other', undefined, job(log, 'fg'), ended('fg'));
  const bgNew = s.submit('k', undefined, job(log, 'bgNew'), ended('bgNew'), 'background');
  assert.deepEqual(await Promise.all([first, bgOld, fg, bgNew]), ['first:done', 'bgOld:superseded', 'fg:done', 'bgNew:done']);
  assert.deepEqual(log, ['first', 'fg', 'bgNew']);
});

const engine = () => new Engine({ modelDirs: [MODELS], provider: 'cpu', threads: 1 });
const req = (over: Partial<CompleteParams> = {}): CompleteParams => ({
  requestId: 'r', languageId: 'typescript', prefix: 'function add(a: number, b: number) {\n  return a', suffix: ';\n}\n', maxTokens: 12, ...over,
});

test('engine: a prefill reads the prompt, and the completion after one typed character reuses it and matches a cold run', async () => {
  const e = engine();
  assert.equal((await e.start('tiny-test')).ok, true);
  const place = req({ requestId: 'p1' });
  const p = await e.prefill(place);
  assert.equal(p.state, 'read');
  assert.equal(p.error, undefined);
  assert.equal(p.reusedTokens, 0);
  assert.equal(p.readTokens, p.promptTokens);
  assert.ok(p.promptTokens > 10);
  assert.equal((await e.prefill(place)).state, 'cached', 'the same place again: nothing to read');
  const typed = req({ prefix: `${place.prefix} ` });
  const warm = await e.complete(typed);
  assert.equal(warm.error, undefined);
  // As much reused as after a completion at the place (PSM re-runs the suffix after the typed text).
  e.activeModel!.kv.clear();
  await e.complete(place);
  const afterCompletion = await e.complete(typed);
  assert.ok(warm.timings.reusedTokens > p.promptTokens / 2, JSON.stringify({ prefill: p, warm: warm.timings }));
  assert.equal(warm.timings.reusedTokens, afterCompletion.timings.reusedTokens);
  e.activeModel!.kv.clear();
  const cold = await e.complete(typed);
  assert.equal(cold.timings.reusedTokens, 0);
  assert.deepEqual(warm.tokens.map((t) => t.id), cold.tokens.map((t) => t.id));
  assert.equal(warm.completion, cold.completion);
  // A prefill where the completion just ran leaves the cache (prompt and generated tokens) alone.
  const lengths = () => e.activeModel!.kv.all.map((c) => c.length);
  const cached = lengths();
  assert.equal((await e.prefill(typed)).state, 'cached');
  assert.deepEqual(lengths(), cached);
  await e.dispose();
});

test('engine: a completion that arrives during a long prefill supersedes it between chunks and reuses the chunks read', async () => {
  const e = engine();
  await e.start('tiny-test');
  const long = req({ prefix: `${'let total = 0;\n'.repeat(40)}return total`, requestId: 'long' });
  const p = e.prefill(long);
  const c = await e.complete({ ...long, requestId: 'c' });
  const r = await p;
  assert.equal(r.state, 'superseded');
  assert.ok(r.readTokens > 0 && r.readTokens < r.promptTokens, JSON.stringify(r));
  assert.equal(c.error, undefined);
  assert.ok(c.timings.reusedTokens >= r.readTokens, JSON.stringify({ prefill: r, complete: c.timings }));
  await e.dispose();
});

test('engine: a prefill of empty or refused input says why and the engine keeps serving', async () => {
  const e = engine();
  await e.start('tiny-test');
  assert.equal((await e.prefill(req({ prefix: ' ', suffix: '\n' }))).state, 'empty_input');
  const bin = await e.prefill(req({ prefix: 'a\0b' }));
  assert.equal(bin.state, 'error');
  assert.match(bin.error!, /binary/);
  assert.equal((await e.prefill(req({}), { cancelled: true })).state, 'cancelled');
  assert.equal((await e.complete(req())).error, undefined);
  await e.dispose();
});

test('engine: going back to the previous place finds its prompt still cached (two KV slots)', async () => {
  const e = engine();
  await e.start('tiny-test');
  const a = req({ requestId: 'a' });
  const b = req({ requestId: 'b', prefix: 'class Stack {\n  items = [];\n  push(x) {\n    this.items.', suffix: '\n  }\n}\n' });
  const first = await e.complete(a);
  assert.equal(first.timings.reusedTokens, 0);
  assert.equal((await e.complete(b)).timings.reusedTokens, 0, 'b shares (almost) nothing with a');
  const back = await e.complete(a);
  assert.equal(back.timings.reusedTokens, back.timings.promptTokens, 'a is still cached, with the logits after it');
  assert.deepEqual(back.tokens.map((t) => t.id), first.tokens.map((t) => t.id));
  // b, used longest ago, gives its slot to a third place; a stays.
  await e.complete(req({ requestId: 'c', prefix: 'def mean(xs):\n    return ', suffix: '\n' }));
  const again = await e.complete(a);
  assert.equal(again.timings.reusedTokens, again.timings.promptTokens);
  assert.equal((await e.complete(b)).timings.reusedTokens < 8, true);
  await e.dispose();
});
