// `vffn bench-places`: the first completion at a place the user moves to. VS Code asks for inline
// completions only after typing, and with SPM prompts (suffix first) a place on another line shares
// almost nothing of its prompt with the last one, so the first keystroke there pays for a cold prompt.
// Two scenarios, each place a real file with the cursor mid-line (samples.ts), the completion measured
// from its arrival in the engine:
// - arriving: the cursor arrives, rests, one character is typed; without a prefill, and with the
//   prefill the extension sends REST_MS after the cursor stops (vffn/prefill, versatileffn.prefillOnRest)
//   and rests of 1, 2 and 5 s. The caches are emptied before every place.
//   "Ghost text shown" is when the completion's first line came (CompletePartial: the extension shows
//   it while the rest is generated), else the whole completion.
// - returning: a completion at place A, one at place B (another file), then back at A with one more
//   character typed (another file and back; VS Code puts the cursor where it was), with one KV cache
//   per model and with the default slots (kvSlots.ts).
import * as path from 'node:path';
import type { CompleteParams, CompleteResult, PrefillResult } from '../../../common/protocol';
import type { Engine } from '../engine/engine';
import { kvSlotCount, KvSlots } from '../engine/kvSlots';
import { defaultReportPath, MIN_FILE_CHARS, repoRoot, roundedPercentile, runStart, SOURCE_DIRS, writeReports } from './bench';
import { pickSamples, sourceFiles, typed, type Sample } from './samples';

/** What the extension sends by default: 256 lines before the cursor, 64 after, 64 tokens at a line's end, 1 s to generate. */
const PREFIX_LINES = 256;
const SUFFIX_LINES = 64;
const MAX_TOKENS = 64;
const MAX_TIME_MS = 1_000;
/** extension/src/completion/prefill.ts REST_MS: the prefill leaves this long after the cursor stops. */
const REST_MS = 400;
const MODES = ['no prefill', 'rest 1 s', 'rest 2 s', 'rest 5 s'] as const;
type Mode = (typeof MODES)[number];
const REST_OF: Record<Mode, number | null> = { 'no prefill': null, 'rest 1 s': 1_000, 'rest 2 s': 2_000, 'rest 5 s': 5_000 };

interface Run {
  mode: Mode; file: string; firstTokenMs: number; totalMs: number; promptTokens: number; reusedTokens: number;
  /** When the extension can show ghost text: the first line (CompletePartial) when it comes before the whole completion. */
  shownMs: number;
  prefill: Pick<PrefillResult, 'state' | 'readTokens' | 'prefillMs'> | null;
}

/** The request the extension would send with the cursor at the end of `prefix` (its window of lines and where it starts). */
export function placeParams(prefix: string, suffix: string, requestId: string): CompleteParams {
  const lines = prefix.split('\n');
  const first = Math.max(0, lines.length - PREFIX_LINES);
  const window = lines.slice(first).join('\n');
  return {
    requestId, languageId: '', prefix: window, prefixOffset: prefix.length - window.length,
    suffix: suffix.split('\n').slice(0, SUFFIX_LINES + 1).join('\n'), maxTokens: MAX_TOKENS, maxTimeMs: MAX_TIME_MS,
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function arriveAndType(engine: Engine, s: Sample, mode: Mode, id: string): Promise<Run> {
  engine.activeModel!.kv.clear();
  const rest = REST_OF[mode];
  const typedOne = typed(s, 1);
  let prefill: Promise<PrefillResult> | null = null;
  if (rest !== null) {
    await sleep(REST_MS);
    prefill = engine.prefill(placeParams(s.prefix, s.suffix, `${id}-p`));
    await sleep(rest - REST_MS);
  }
  let firstLineMs: number | null = null;
  const r: CompleteResult = await engine.complete(placeParams(typedOne.prefix, typedOne.suffix, id), undefined, (p) => { firstLineMs = p.elapsedMs; });
  if (r.error) throw new Error(`${s.file}: ${r.error}`);
  const p = prefill ? await prefill : null;
  return {
    mode, file: path.relative(repoRoot(), s.file), firstTokenMs: r.timings.firstTokenMs, totalMs: r.timings.totalMs,
    shownMs: firstLineMs ?? r.timings.totalMs,
    promptTokens: r.timings.promptTokens, reusedTokens: r.timings.reusedTokens,
    prefill: p && { state: p.state, readTokens: p.readTokens, prefillMs: p.prefillMs },
  };
}

interface Return { slots: number; file: string; totalMs: number; promptTokens: number; reusedTokens: number; }

/** Back at A after a completion at B: the completion at A with one more character, on `slots` KV caches. */
async function goBack(engine: Engine, a: Sample, b: Sample, slots: number, id: string): Promise<Return> {
  const m = engine.activeModel!;
  m.kv.dispose();
  m.kv = new KvSlots(m.session.kv, slots);
  const at = (s: Sample, n: number, tag: string) => {
    const t = typed(s, n);
    return engine.complete(placeParams(t.prefix, t.suffix, `${id}-${tag}`));
  };
  await at(a, 1, 'a');
  await at(b, 1, 'b');
  const r = await at(a, 2, 'back');
  if (r.error) throw new Error(`${a.file}: ${r.error}`);
  return { slots, file: path.relative(repoRoot(), a.file), totalMs: r.timings.totalMs, promptTokens: r.timings.promptTokens, reusedTokens: r.timings.reusedTokens };
}

export async function runPlacesBench(engine: Engine, opts: { samples?: number; out?: string }): Promise<{ markdown: string; json: unknown }> {
  const run = runStart();
  const root = repoRoot();
  const samples = pickSamples(sourceFiles(root, SOURCE_DIRS, MIN_FILE_CHARS), opts.samples ?? 12, 7);
  const m = engine.activeModel!;
  await arriveAndType(engine, samples[0], 'no prefill', 'warm-up');   // pages in the weights
  const runs: Run[] = [];
  // Each place in every mode, the order rotated per place so that a machine that slows down favours none.
  for (const [i, s] of samples.entries()) {
    for (let k = 0; k < MODES.length; k++) {
      const mode = MODES[(i + k) % MODES.length];
      runs.push(await arriveAndType(engine, s, mode, `s${i}-${k}`));
    }
  }
  const defaultSlots = kvSlotCount();
  const returns: Return[] = [];
  for (const [i, s] of samples.entries()) {
    const other = samples[(i + 1) % samples.length];
    for (const slots of i % 2 ? [defaultSlots, 1] : [1, defaultSlots]) returns.push(await goBack(engine, s, other, slots, `r${i}-${slots}`));
  }
  m.kv.dispose();
  m.kv = new KvSlots(m.session.kv, defaultSlots);
  const summary = MODES.map((mode) => summarize(mode, runs.filter((r) => r.mode === mode)));
  const returning = [...new Set([1, defaultSlots])].map((slots) => summarizeReturns(slots, returns.filter((r) => r.slots === slots)));
  const json = {
    ...run,
    command: 'node dist/cli.js bench-places', model: m.name, promptBudget: m.promptTokens, samples: samples.length,
    restMs: REST_MS, maxTokens: MAX_TOKENS, maxTimeMs: MAX_TIME_MS, summary, returning, runs, returns,
  };
  const markdown = toMarkdown(json);
  const out = writeReports(opts.out ?? defaultReportPath(root, 'places', json.date), json, markdown);
  return { markdown: `${markdown}\nreport: ${out}\n`, json };
}

/** How much of the prompt the cache held when the completion arrived, in percent. */
const cachedPercent = (r: { reusedTokens: number; promptTokens: number }) => (100 * r.reusedTokens) / Math.max(1, r.promptTokens);

function summarizeReturns(slots: number, rs: Return[]) {
  return {
    slots, places: rs.length,
    totalP50: roundedPercentile(rs.map((r) => r.totalMs), 50), totalP95: roundedPercentile(rs.map((r) => r.totalMs), 95),
    reusedShareP50: roundedPercentile(rs.map(cachedPercent), 50),
  };
}

function summarize(mode: Mode, runs: Run[]) {
  return {
    mode, places: runs.length,
    firstTokenP50: roundedPercentile(runs.map((r) => r.firstTokenMs), 50), firstTokenP95: roundedPercentile(runs.map((r) => r.firstTokenMs), 95),
    shownP50: roundedPercentile(runs.map((r) => r.shownMs), 50), shownP95: roundedPercentile(runs.map((r) => r.shownMs), 95),
    totalP50: roundedPercentile(runs.map((r) => r.totalMs), 50), totalP95: roundedPercentile(runs.map((r) => r.totalMs), 95),
    promptTokensP50: roundedPercentile(runs.map((r) => r.promptTokens), 50),
    reusedShareP50: roundedPercentile(runs.map(cachedPercent), 50),
    prefillsRead: runs.filter((r) => r.prefill?.state === 'read').length,
  };
}

function toMarkdown(j: { date: string; machine: string; loadAverageAtStart: number[]; model: string; promptBudget: number; samples: number;
  restMs: number; maxTokens: number; maxTimeMs: number; summary: ReturnType<typeof summarize>[]; returning: ReturnType<typeof summarizeReturns>[] }): string {
  const rows = j.summary.map((s) => `| ${s.mode} | ${s.places} | ${s.firstTokenP50} / ${s.firstTokenP95} ms | ${s.shownP50} / ${s.shownP95} ms | ${s.totalP50} / ${s.totalP95} ms `
    + `| ${s.reusedShareP50}% of ${s.promptTokensP50} | ${s.mode === 'no prefill' ? '–' : `${s.prefillsRead} of ${s.places}`} |`);
  return [
    `# The first completion at a place the cursor moves to, ${j.date}`, '',
    `Machine: ${j.machine}; load average ${j.loadAverageAtStart.join(' ')} at start. Model ${j.model} (prompt budget ${j.promptBudget} tokens). `
      + 'Command: `node dist/cli.js bench-places`.', '',
    '## Arriving: reading the prompt while the cursor rests', '',
    `${j.samples} places in the repository's own files (the caches emptied before each); the cursor arrives, rests, one character is typed; `
      + `the completion (at most ${j.maxTokens} tokens, ${j.maxTimeMs} ms to generate, as the extension sends it) measured from its arrival in the engine. `
      + `The prefill leaves ${j.restMs} ms after the cursor stops. Ghost text shown: when the completion's first line came `
      + '(the extension shows it while the rest is generated), else the whole completion.', '',
    '| mode | places | first token p50 / p95 | ghost text shown p50 / p95 | whole completion p50 / p95 | prompt cached when it arrived (median) | prefills that read the whole prompt |',
    '|---|---|---|---|---|---|---|',
    ...rows, '',
    '## Returning: another file and back', '',
    'A completion at place A, one at place B (the next sample, another file), then one at A with one more character typed; '
      + 'the last one measured, with one KV cache per model and with the default slots (`VFFN_KV_SLOTS`).', '',
    '| KV caches | places | completion back at A, p50 / p95 | prompt cached when it arrived (median) |',
    '|---|---|---|---|',
    ...j.returning.map((r) => `| ${r.slots} | ${r.places} | ${r.totalP50} / ${r.totalP95} ms | ${r.reusedShareP50}% |`), '',
  ].join('\n');
}
