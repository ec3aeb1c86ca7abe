// The pure parts of `npm run bench:peer`: prompt cutting at exact token counts, the comparison rows,
// goals and report. Neither engine runs here (node-llama-cpp is not needed); no timing is asserted.
import assert from 'node:assert/strict';
import * as path from 'node:path';
import { test } from 'node:test';
import { buildPrompt, defaultBudget } from '../../../backend/src/engine/prompt';
import { parseArgs, peerDir } from '../../../backend/src/tools/peerBench';
import { blockAnchors, byFolderInTurn, engineIds, ExactPromptOptions, exactPromptSets, firstTokens, firstUnanswered, lastTokens, PromptTok, Tok } from '../../../backend/src/tools/peerPrompts';
import {
  checkGoal, compareSides, fmt, fmtRatio, goalCounts, goalText, median, pct, PeerReport, RunTiming, SideResult, toMarkdown,
} from '../../../backend/src/tools/peerReport';
import { SPECIAL } from './helpers';

/** One token per character, except that "ab" is one token: cuts inside a merge must be avoided. */
const mergingTok: Tok = {
  encode(text) {
    const ids: number[] = [];
    for (let i = 0; i < text.length; i++) {
      if (text.startsWith('ab', i)) {
        ids.push(9999);
        i++;
      } else ids.push(text.codePointAt(i)! + 10);
    }
    return ids;
  },
  decode(ids) {
    return ids.map((id) => (id === 9999 ? 'ab' : String.fromCodePoint(id - 10))).join('');
  },
};

test('lastTokens and firstTokens cut text at exactly n tokens of its own encoding', () => {
  const text = 'xxabyyabzz';
  for (let n = 1; n <= mergingTok.encode(text).length; n++) {
    const end = lastTokens(mergingTok, text, n);
    assert.ok(end !== null && text.endsWith(end), `end ${n}`);
    assert.equal(mergingTok.encode(end!).length, n);
    const start = firstTokens(mergingTok, text, n);
    assert.ok(start !== null && text.startsWith(start), `start ${n}`);
    assert.equal(mergingTok.encode(start!).length, n);
  }
  assert.equal(lastTokens(mergingTok, 'abc', 10), null);
  assert.equal(firstTokens(mergingTok, 'abc', 0), '');
});

const SOURCE = [
  'import x from "y";',
  '',
  'function add(a, b) {',
  '  const s = a + b;',
  '  log(s);',
  '',
  '  check(s);',
  '  return s;',
  '}',
  'function short() {',
  '  return 1;',
  '}',
  'class A:',
  '    def f(self):',
  '        one = 1',
  '        two = 2',
  '        three = 3',
  '        return one + two + three',
  'end = True',
].join('\n');

test('blockAnchors: the cursor ends a block-opening line, the suffix starts at the line break before the closing line', () => {
  const anchors = blockAnchors(SOURCE);
  // function add (4 body lines), class A (5 body lines), def f (4); not short() (1 body line).
  assert.deepEqual(anchors.map((a) => a.line), [2, 12, 13]);
  const [a] = anchors;
  assert.ok(SOURCE.slice(0, a.cursor).endsWith('function add(a, b) {'));
  assert.ok(SOURCE.slice(a.holeEnd).startsWith('\n}\nfunction short'));
});

/** The one set of prompts the first fitting file gives. */
const exactPrompts = (tok: PromptTok, special: typeof SPECIAL, files: { path: string; text: string }[], sizes: number[], opts: ExactPromptOptions) =>
  exactPromptSets(tok, special, files, sizes, opts, 1)[0];

test('exactPromptSets, one set: the engine\'s buildPrompt keeps every token and the prompt has exactly each size', () => {
  const text = `${'// filler line of text\n'.repeat(20)}${SOURCE}\n`;
  const files = [{ path: 'a.ts', text }];
  const opts = { contextLength: 1024, maxTokens: 16, suffixTokens: 12 };
  const prompts = exactPrompts(mergingTok, SPECIAL, files, [60, 200], opts);
  assert.equal(prompts.length, 2);
  for (const p of prompts) {
    assert.equal(p.ids.length, p.promptTokens);
    assert.deepEqual(p.ids, buildPrompt(mergingTok, SPECIAL, { prefix: p.prefix, suffix: p.suffix }, defaultBudget(1024, 16)).ids);
    assert.equal(mergingTok.encode(p.suffix).length, 12);
    assert.ok(p.suffix.startsWith('\n'));
  }
  // Same cursor for every size: the prompts differ only in how much text before it they keep.
  assert.ok(prompts[1].prefix.endsWith(prompts[0].prefix));
  assert.equal(prompts[0].suffix, prompts[1].suffix);
  assert.throws(() => exactPrompts(mergingTok, SPECIAL, files, [5000], opts), /no block in a\.ts gives FIM prompts of exactly 5000/);
});

test('exactPromptSets: one set per file, each file\'s prompts at one cursor, files without room skipped', () => {
  const long = (name: string) => ({ path: name, text: `${`// filler of ${name}\n`.repeat(20)}${SOURCE}\n` });
  const files = [long('a.ts'), { path: 'short.ts', text: SOURCE }, long('b.ts'), long('c.ts')];
  const opts = { contextLength: 1024, maxTokens: 16, suffixTokens: 12 };
  const sets = exactPromptSets(mergingTok, SPECIAL, files, [60, 200], opts, 2);
  assert.deepEqual(sets.map((s) => s.map((p) => p.file)), [['a.ts', 'a.ts'], ['b.ts', 'b.ts']]);
  for (const set of sets) {
    assert.deepEqual(set.map((p) => p.ids.length), [60, 200]);
    assert.ok(set[1].prefix.endsWith(set[0].prefix));
  }
  assert.notEqual(sets[0][1].prefix, sets[1][1].prefix, 'another file, another text');
  assert.equal(exactPromptSets(mergingTok, SPECIAL, files, [60, 200], opts, 10).length, 3, 'as many as fit when fewer than asked');
  assert.throws(() => exactPromptSets(mergingTok, SPECIAL, [files[1]], [200], opts, 3), /no block in short\.ts/);
});

test('byFolderInTurn: one file of each folder in turn, each folder in its own order', () => {
  const files = ['a/1.ts', 'a/2.ts', 'a/3.ts', 'b/1.py', 'c/d/1.js', 'c/d/2.js', 'top.ts'].map((p) => ({ path: p }));
  assert.deepEqual(byFolderInTurn(files).map((f) => f.path), ['a/1.ts', 'b/1.py', 'c/d/1.js', 'top.ts', 'a/2.ts', 'c/d/2.js', 'a/3.ts']);
  assert.deepEqual(byFolderInTurn([]), []);
});

test('exactPromptSets in SPM order: the ids are what the engine runs, its healed last token left out', () => {
  const text = `${'// filler line of text\n'.repeat(20)}${SOURCE}\n`;
  const healingTok: PromptTok = { ...mergingTok, vocabSize: 10_000, controlIds: [], tokenText: (id) => mergingTok.decode([id]) };
  const opts = { contextLength: 1024, maxTokens: 16, suffixTokens: 12, order: 'spm' as const };
  const prompts = exactPrompts(healingTok, SPECIAL, [{ path: 'a.ts', text }], [60, 200], opts);
  for (const p of prompts) {
    assert.equal(p.ids.length, p.promptTokens);
    const built = buildPrompt(healingTok, SPECIAL, { prefix: p.prefix, suffix: p.suffix }, defaultBudget(1024, 16), 'spm').ids;
    // The block opener's last character ends the prefix: the engine heals it, so one token more of text was cut.
    assert.deepEqual(p.ids, built.slice(0, -1));
    assert.deepEqual(engineIds(healingTok, SPECIAL, p.prefix, p.suffix, 1024, 16, 'spm').ids, p.ids);
  }
  assert.throws(() => exactPrompts(mergingTok, SPECIAL, [{ path: 'a.ts', text }], [60], opts), /token texts/);
});

test('median and nearest-rank percentiles', () => {
  assert.equal(median([]), null);
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([4, 1, 2, 3]), 2.5);
  const xs = Array.from({ length: 20 }, (_, i) => 20 - i);
  assert.equal(pct(xs, 50), 10);
  assert.equal(pct(xs, 95), 19);
});

test('goals: ratio bounds and absolute bounds, unknown when a value is missing', () => {
  assert.equal(checkGoal({ maxRatio: 0.5 }, 10, 0.5), true);
  assert.equal(checkGoal({ maxRatio: 0.5 }, 10, 0.51), false);
  assert.equal(checkGoal({ minRatio: 1.5 }, 10, 1.4), false);
  assert.equal(checkGoal({ maxValue: 150, maxRatio: 0.5 }, 151, 0.1), false);
  assert.equal(checkGoal({ maxValue: 150, maxRatio: 0.5 }, 149, 0.4), true);
  assert.equal(checkGoal({ maxRatio: 0.5 }, null, null), null);
  assert.equal(checkGoal(undefined, 1, 1), null);
  assert.equal(goalText({ maxValue: 150, maxRatio: 0.5 }, 'ms'), '≤ 150 ms and ≤ 0.5×');
  assert.equal(goalText({ minRatio: 1.5 }, 'tok/s'), '≥ 1.5×');
  assert.equal(fmt(1234.5, 'ms'), '1,235');
  assert.equal(fmt(41.26, 'ms'), '41.3');
  assert.equal(fmt(null), '–');
  assert.equal(fmtRatio(0.4567), '0.46×');
});

test('the editor\'s first unanswered keystroke: its cache answers every one that types through the cold completion', () => {
  const s = { file: 'f.ts', prefix: 'const total = ', unwritten: 'items.length;', suffix: '\n}\n' };
  assert.equal(firstUnanswered(s, 'items.count;'), 7);      // "items." is typed through; "l" departs
  assert.equal(firstUnanswered(s, 'values;'), 1);           // the first character departs
  assert.equal(firstUnanswered(s, 'items.length; // n'), null, 'all 12 typed through');
  assert.equal(firstUnanswered({ ...s, unwritten: 'ab' }, 'ab'), 2, 'typing all of it leaves nothing to show: a request');
});

function run(prefillMs: number, decode: number | null, totalMs = prefillMs + 100): RunTiming {
  return { firstTokenMs: prefillMs + 5, totalMs, prefillMs, promptTokens: 900, reusedTokens: 0, generatedTokens: 16, decodeMsPerToken: decode };
}

function side(engine: SideResult['engine'], scale: number, warmMs: number[], peakMb: number): SideResult {
  return {
    engine, label: engine, versions: {}, threads: 2, loadAverageAtStart: [0.1, 0.2, 0.3], loadMs: 1000, rssAfterLoadBytes: peakMb * 0.8 * 2 ** 20,
    peakRssBytes: peakMb * 2 ** 20,
    prefill: [
      { promptTokens: 250, runs: [run(1000 * scale, 20 * scale), run(1100 * scale, 22 * scale), run(900 * scale, 18 * scale)] },
      { promptTokens: 1000, runs: [run(4000 * scale, 30 * scale)] },
    ],
    completions: warmMs.map((w) => ({ file: 'f.ts', cold: run(3000, 25), warm: { ...run(w / 2, 25, w), reusedTokens: 850 } })),
    notes: [`${engine} note`],
  };
}

test('compareSides: one row per metric with ours, llama.cpp, the ratio and the goal', () => {
  const ours = side('ours', 0.5, [100, 120, 140, 300], 700);
  const peer = side('llama.cpp', 1, [400, 500, 600, 900], 1000);
  const rows = compareSides(ours, peer, [250, 1000]);
  const row = (k: string) => rows.find((r) => r.key === k)!;
  assert.equal(row('prefill_ms_250').ours, 500);
  assert.equal(row('prefill_ms_250').peer, 1000);
  assert.equal(row('prefill_tps_250').ours, 500);              // 250 tokens in 0.5 s
  assert.equal(row('prefill_tps_250').ratio, 2);
  assert.equal(row('prefill_tps_250').met, true);              // ≥ 1.5×
  assert.equal(row('decode_ms_250').ratio, 0.5);
  assert.equal(row('decode_ms_250').met, true);                // ≤ 0.5×
  // Drafts off: ours' plainDecode runs against llama.cpp's own decode (it drafts nothing); no goal on it.
  assert.equal(row('decode_plain_ms_250').ours, null, 'ours reported no run with drafts off');
  assert.equal(row('decode_plain_ms_250').peer, 20);
  const plain = compareSides({ ...ours, plainDecode: [{ promptTokens: 250, runs: [run(500, 14), run(500, 16)] }] }, peer, [250, 1000]);
  const p250 = plain.find((r) => r.key === 'decode_plain_ms_250')!;
  assert.deepEqual([p250.ours, p250.peer, p250.ratio, p250.goal, p250.met], [15, 20, 0.75, '', null]);
  assert.equal(plain.find((r) => r.key === 'decode_ms_250')!.ours, 10, 'the drafted row still reads the prefill runs');
  assert.equal(plain.find((r) => r.key === 'decode_plain_ms_1000')!.ours, null);
  assert.equal(row('warm_p50').ours, 120);
  assert.equal(row('warm_p50').met, true);                     // 120 ≤ 150 ms and 0.24×
  assert.equal(row('warm_p95').ours, 300);
  assert.equal(row('warm_p95').met, true);
  assert.equal(row('rss_peak').ratio, 0.7);
  assert.equal(row('rss_peak').met, true);
  assert.equal(row('warm_tokens_run_p50').ours, 50);
  assert.equal(row('cold_p50').goal, '');
  assert.equal(row('cold_p50').met, null);
  assert.deepEqual(goalCounts(rows), { met: 7, missed: 0, unknown: 0 });
  // No sample marked as typed through: all four are "something else", on both sides.
  assert.equal(row('warm_other_p50').ours, 120);
  assert.equal(row('warm_through_p50').ours, null);
  assert.equal(row('warm_replayed').ours, null, 'no side reported replayed tokens');

  // Ours marks samples 0 and 1 as typed through (and replayed their picks): the split reads ours' marks for both sides.
  const marked: SideResult = {
    ...ours,
    completions: ours.completions.map((c, i) => ({ ...c, continues: i < 2, warm: { ...c.warm, replayedTokens: i < 2 ? 15 : 0 } })),
  };
  const split = compareSides(marked, peer, [250, 1000]);
  const at = (k: string) => split.find((r) => r.key === k)!;
  assert.equal(at('warm_through_p50').ours, 100);
  assert.equal(at('warm_through_p50').peer, 400);
  assert.equal(at('warm_other_p95').ours, 300);
  assert.equal(at('warm_other_p95').peer, 900);
  assert.match(at('warm_through_p50').label, /typed through the previous completion \(2 of 4\)/);
  assert.equal(at('warm_replayed').ours, 30);
  assert.equal(at('warm_replayed').peer, null);
  assert.equal(at('warm_generated').ours, 64);

  // The editor's request: sample 0 had its first unanswered keystroke at 1 (the warm request), sample 1 at 5
  // (a request of its own on both sides), samples 2 and 3 none (the cache answered all it was asked).
  const editorRun = (ms: number): RunTiming => ({ ...run(ms / 2, 25, ms), reusedTokens: 850 });
  const withEditor = (x: SideResult, ms: number, mark: boolean): SideResult => ({
    ...x,
    completions: x.completions.map((c, i) => ({
      ...c, ...(mark ? { editorKeystroke: [1, 5, null, null][i] } : {}), ...(i === 1 ? { editor: editorRun(ms) } : {}),
    })),
  });
  const ed = compareSides(withEditor(ours, 200, true), withEditor(peer, 700, false), [250, 1000]);
  const e50 = ed.find((r) => r.key === 'editor_p50')!;
  assert.equal(e50.ours, 100);                 // ours' warm of sample 0 (100 ms) and its editor request (200 ms)
  assert.equal(e50.peer, 400);                 // the peer's warm of sample 0 and its editor request (700 ms)
  assert.match(e50.label, /the first keystroke the editor's cache cannot answer \(2 of 4\)/);
  assert.equal(ed.find((r) => r.key === 'editor_p95')!.ours, 200);

  const slow = side('ours', 2, [200, 250, 300, 500], 900);
  const rows2 = compareSides(slow, peer, [250, 1000]);
  assert.equal(rows2.find((r) => r.key === 'warm_p50')!.met, false);   // 250 ms > 150 ms
  assert.equal(rows2.find((r) => r.key === 'rss_peak')!.met, false);   // 0.9× > 0.8×
  assert.deepEqual(goalCounts(rows2), { met: 0, missed: 7, unknown: 0 });

  const report: PeerReport = {
    date: '2026-12-01T00:00:00.000Z', machine: '2× Test CPU', loadAverageAtStart: [0.5, 0.4, 0.3], cpuBusyAtStart: 3, command: 'npm run bench:peer',
    settings: { prefillRuns: 3 }, prompts: { prefill: [{ promptTokens: 250, sources: [{ file: 'a.ts', line: 3 }, { file: 'b.ts', line: 7 }, { file: 'a.ts', line: 3 }] }, { promptTokens: 1000, sources: [{ file: 'a.ts', line: 3 }, { file: 'b.ts', line: 7 }, { file: 'a.ts', line: 3 }] }], completions: 4, sampleFiles: ['f.ts'] },
    versions: { node: 'v20' }, ours: slow, peer, rows: rows2, goals: goalCounts(rows2),
  };
  const md = toMarkdown(report);
  assert.match(md, /Machine: 2× Test CPU; load average 0\.5 0\.4 0\.3 at start, CPUs 3% busy in the 2 s before it/);
  assert.match(md, /\| cold prefill speed, 250 tokens \(tok\/s\) \| 125 \| 250 \| 0\.50× \| ≥ 1\.5× \| \*\*missed\*\* \|/);
  assert.match(md, /\| warm single-line completion \(one more character typed\), p50 \(ms\) \| 250 \| 500 \| 0\.50× \| ≤ 150 ms and ≤ 0\.5× \| \*\*missed\*\* \|/);
  assert.match(md, /Goals: 0 met, 7 missed\./);
  assert.match(md, /FIM at a\.ts:3, b\.ts:7, the same ids on both sides/, 'each place where a cold prompt was cut, once');
  assert.match(md, /- ours: ours note/);
});

test('parseArgs: defaults, flags, and errors that say what is wrong', () => {
  assert.deepEqual(parseArgs([]), { threads: 2, samples: 20, decodeTokens: 16, prefillRuns: 5, model: 'models/qwen2.5-coder-0.5b-vffn' });
  const a = parseArgs(['--threads', '4', '--samples', '5', '--gguf', 'x.gguf']);
  assert.equal(a.threads, 4);
  assert.equal(a.samples, 5);
  assert.equal(a.gguf, 'x.gguf');
  assert.throws(() => parseArgs(['--samples', 'many']), /--samples must be a positive integer/);
  assert.throws(() => parseArgs(['--bogus', '1']), /unknown option --bogus/);
  assert.throws(() => parseArgs(['--threads']), /--threads needs a value/);
});

test('node-llama-cpp lives in the cache, outside the checkout', () => {
  assert.equal(peerDir({ VFFN_CACHE: '/c' }), path.join('/c', 'peer', 'node-llama-cpp-3.22.1'));
  assert.match(peerDir({}), /\.cache[/\\]versatileffn[/\\]peer[/\\]node-llama-cpp-3\.22\.1$/);
});
