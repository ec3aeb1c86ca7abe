// `vffn bench-rest`: the first completion at a new place, with and without reading its prompt while
// the cursor rests there (vffn/prefill; the extension's versatileffn.prefillOnRest). VS Code asks for
// inline completions only after typing, so without it the first keystroke at a place the user clicked
// pays for a cold prompt. For each place (a real file, cursor at the end of a line's first part, as
// bench.ts samples it) the cursor arrives, rests for a while, and one character is typed; the
// completion is measured from its arrival in the engine. Modes: no prefill, and prefill with rests
// of 1, 2 and 5 s (the extension sends the prefill REST_MS after the cursor stops). The cache is
// emptied before every place, as if the user came from another file.
import * as os from 'node:os';
import * as path from 'node:path';
import type { CompleteParams, CompleteResult, PrefillResult } from '../../../common/protocol';
import type { Engine } from '../engine/engine';
import { defaultReportPath, machineName, MIN_FILE_CHARS, repoRoot, roundedPercentile, SOURCE_DIRS, writeReports } from './bench';
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
  engine.activeModel!.cache.clear();
  const rest = REST_OF[mode];
  const typedOne = typed(s, 1);
  let prefill: Promise<PrefillResult> | null = null;
  if (rest !== null) {
    await sleep(REST_MS);
    prefill = engine.prefill(placeParams(s.prefix, s.suffix, `${id}-p`));
    await sleep(rest - REST_MS);
  }
  const r: CompleteResult = await engine.complete(placeParams(typedOne.prefix, typedOne.suffix, id));
  if (r.error) throw new Error(`${s.file}: ${r.error}`);
  const p = prefill ? await prefill : null;
  return {
    mode, file: path.relative(repoRoot(), s.file), firstTokenMs: r.timings.firstTokenMs, totalMs: r.timings.totalMs,
    promptTokens: r.timings.promptTokens, reusedTokens: r.timings.reusedTokens,
    prefill: p && { state: p.state, readTokens: p.readTokens, prefillMs: p.prefillMs },
  };
}

export async function runRestBench(engine: Engine, opts: { samples?: number; out?: string }): Promise<{ markdown: string; json: unknown }> {
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
  const summary = MODES.map((mode) => summarize(mode, runs.filter((r) => r.mode === mode)));
  const json = {
    date: new Date().toISOString(), machine: machineName(), loadAverageAtStart: os.loadavg().map((x) => Math.round(x * 100) / 100),
    command: 'node dist/cli.js bench-rest', model: m.name, promptBudget: m.promptTokens, samples: samples.length,
    restMs: REST_MS, maxTokens: MAX_TOKENS, maxTimeMs: MAX_TIME_MS, summary, runs,
  };
  const markdown = toMarkdown(json);
  const out = writeReports(opts.out ?? defaultReportPath(root, 'rest', json.date), json, markdown);
  return { markdown: `${markdown}\nreport: ${out}\n`, json };
}

function summarize(mode: Mode, runs: Run[]) {
  const pct = (xs: number[], q: number) => roundedPercentile(xs, q);
  return {
    mode, places: runs.length,
    firstTokenP50: pct(runs.map((r) => r.firstTokenMs), 50), firstTokenP95: pct(runs.map((r) => r.firstTokenMs), 95),
    totalP50: pct(runs.map((r) => r.totalMs), 50), totalP95: pct(runs.map((r) => r.totalMs), 95),
    promptTokensP50: pct(runs.map((r) => r.promptTokens), 50),
    reusedShareP50: pct(runs.map((r) => (100 * r.reusedTokens) / Math.max(1, r.promptTokens)), 50),
    prefillsRead: runs.filter((r) => r.prefill?.state === 'read').length,
  };
}

function toMarkdown(j: { date: string; machine: string; loadAverageAtStart: number[]; model: string; promptBudget: number; samples: number;
  restMs: number; maxTokens: number; maxTimeMs: number; summary: ReturnType<typeof summarize>[] }): string {
  const rows = j.summary.map((s) => `| ${s.mode} | ${s.places} | ${s.firstTokenP50} / ${s.firstTokenP95} ms | ${s.totalP50} / ${s.totalP95} ms `
    + `| ${s.reusedShareP50}% of ${s.promptTokensP50} | ${s.mode === 'no prefill' ? '–' : `${s.prefillsRead} of ${s.places}`} |`);
  return [
    `# The first completion at a new place, with and without reading the prompt while the cursor rests, ${j.date}`, '',
    `Machine: ${j.machine}; load average ${j.loadAverageAtStart.join(' ')} at start. Model ${j.model} (prompt budget ${j.promptBudget} tokens); `
      + `${j.samples} places in the repository's own files (the cache emptied before each); the cursor arrives, rests, one character is typed; `
      + `the completion (at most ${j.maxTokens} tokens, ${j.maxTimeMs} ms to generate, as the extension sends it) measured from its arrival in the engine. `
      + `The prefill leaves ${j.restMs} ms after the cursor stops. Command: \`node dist/cli.js bench-rest\`.`, '',
    '| mode | places | first token p50 / p95 | whole completion p50 / p95 | prompt cached when it arrived (median) | prefills that read the whole prompt |',
    '|---|---|---|---|---|---|',
    ...rows, '',
  ].join('\n');
}
