// `vffn bench-drafts`: what a drafting setting does to completions, as an A/B in one process. For each
// sample and scenario the same request runs twice on the same cache, as shipped and with one setting
// changed (`--ab NAME=VALUE`; default VFFN_HISTORY_DRAFT_TOKENS=0: drafts from the previous completion
// off, drafts.ts historyLookup). Scenarios: the cold completion itself (empty KV cache; where prompt
// lookup's guesses decide the decode speed), and warm ones after it: the user types the file's next
// character (what `npm run bench:peer` measures), or the first character of the ghost text shown
// (typing through it). Reports latency, decode per token and model runs both ways, and whether the
// completions are the same (drafts never change greedy choices, but a run over several tokens can
// round differently from one-token runs).
import * as path from 'node:path';
import type { CompleteResult } from '../../../common/protocol';
import type { Engine } from '../engine/engine';
import { defaultReportPath, MIN_FILE_CHARS, repoRoot, roundedPercentile, runStart, SOURCE_DIRS, writeReports } from './bench';
import { pickSamples, Sample, sourceFiles, typed } from './samples';
import { parseAb, withSetting } from './typingBench';

const MAX_TOKENS = 32;
export const DEFAULT_DRAFT_AB = 'VFFN_HISTORY_DRAFT_TOKENS=0';

/** One measured request: decodeMs over `decoded` tokens that a model run picked (not the first, not replayed). */
interface Measured { totalMs: number; decodeMs: number; decoded: number; runs: number; tokens: number; completion: string; }
interface Pair { file: string; scenario: Scenario; shipped: Measured; changed: Measured; }
type Scenario = 'nothing typed (cold, empty KV cache)' | 'next character of the file' | 'first character of the ghost text';
type Text = { prefix: string; suffix: string };
/** The measured request's text, given the sample and its cold completion (null: not measurable here); null `next`: the cold one is measured. */
type Next = ((s: Sample, cold: CompleteResult) => Text | null) | null;

export async function runDraftBench(engine: Engine, opts: { samples?: number; out?: string; ab?: string }): Promise<{ markdown: string; json: unknown }> {
  const run = runStart();
  const root = repoRoot();
  const ab = parseAb(opts.ab ?? DEFAULT_DRAFT_AB);
  const [name, value] = ab;
  const samples = pickSamples(sourceFiles(root, SOURCE_DIRS, MIN_FILE_CHARS), opts.samples ?? 20, 42);
  const m = engine.activeModel!;
  const complete = async (id: string, text: Text) => {
    const r = await engine.complete({ requestId: id, languageId: '', ...text, maxTokens: MAX_TOKENS });
    if (r.error) throw new Error(`${id}: ${r.error}`);
    return r;
  };
  /** The scenario's request on a fresh cache, with the setting changed or not. */
  const measure = async (id: string, s: Sample, next: Next, changed: boolean): Promise<Measured | null> => {
    const setting = changed ? ab : null;
    m.kv.clear();
    const runsBefore = m.session.runs;
    if (!next) return measured(await withSetting(setting, () => complete(`${id}-cold`, s)), m.session.runs - runsBefore);
    const text = next(s, await complete(`${id}-cold`, s));
    if (!text) return null;
    const warmBefore = m.session.runs;
    return measured(await withSetting(setting, () => complete(`${id}-warm`, text)), m.session.runs - warmBefore);
  };
  const scenarios: [Scenario, Next][] = [
    ['nothing typed (cold, empty KV cache)', null],
    ['next character of the file', (s) => typed(s, 1)],
    ['first character of the ghost text', (s, cold) => (cold.completion ? { prefix: s.prefix + cold.completion[0], suffix: s.suffix } : null)],
  ];
  const pairs: Pair[] = [];
  await complete('warmup', samples[0]);
  for (const [i, s] of samples.entries()) {
    for (const [scenario, next] of scenarios) {
      const shipped = await measure(`s${i}`, s, next, false);
      const changed = await measure(`s${i}`, s, next, true);
      if (shipped && changed) pairs.push({ file: path.relative(root, s.file), scenario, shipped, changed });
    }
  }
  const summary = scenarios.map(([scenario]) => summarize(scenario, pairs.filter((p) => p.scenario === scenario)));
  const json = {
    ...run,
    command: `node dist/cli.js bench-drafts --ab ${name}=${value}`, model: m.name, maxTokens: MAX_TOKENS, setting: `${name}=${value}`, summary, pairs,
  };
  const markdown = toMarkdown(json);
  const out = writeReports(opts.out ?? defaultReportPath(root, 'drafts', json.date), json, markdown);
  return { markdown: `${markdown}\nreport: ${out}\n`, json };
}

function measured(r: CompleteResult, runs: number): Measured {
  const t = r.timings;
  return {
    totalMs: t.totalMs, decodeMs: t.decodeMs, decoded: Math.max(0, t.generatedTokens - (t.replayedTokens ?? 0) - 1),
    runs, tokens: t.generatedTokens, completion: r.completion,
  };
}

function summarize(scenario: Scenario, pairs: Pair[]) {
  const side = (f: (x: Pair) => Measured) => {
    const decoded = pairs.reduce((n, x) => n + f(x).decoded, 0);
    return {
      p50Ms: roundedPercentile(pairs.map((x) => f(x).totalMs), 50), p95Ms: roundedPercentile(pairs.map((x) => f(x).totalMs), 95),
      // All requests' decode time over all their decoded tokens: long completions weigh as much as they cost.
      decodeMsPerToken: decoded ? Math.round((pairs.reduce((n, x) => n + f(x).decodeMs, 0) / decoded) * 10) / 10 : null,
      runs: pairs.reduce((n, x) => n + f(x).runs, 0), tokens: pairs.reduce((n, x) => n + f(x).tokens, 0),
    };
  };
  return {
    scenario, requests: pairs.length, shipped: side((x) => x.shipped), changed: side((x) => x.changed),
    sameCompletion: pairs.filter((x) => x.shipped.completion === x.changed.completion).length,
  };
}

function toMarkdown(j: { date: string; machine: string; loadAverageAtStart: number[]; model: string; maxTokens: number; setting: string; command: string; summary: ReturnType<typeof summarize>[] }): string {
  const side = (s: ReturnType<typeof summarize>['shipped']) => `${s.p50Ms} / ${s.p95Ms} ms | ${s.decodeMsPerToken ?? '–'} ms`;
  const rows = j.summary.map((s) => `| ${s.scenario} | ${s.requests} | ${side(s.shipped)} | ${side(s.changed)} | `
    + `${s.shipped.runs} for ${s.shipped.tokens} tokens | ${s.changed.runs} for ${s.changed.tokens} tokens | ${s.sameCompletion} of ${s.requests} |`);
  return [
    `# Drafting as shipped vs ${j.setting}, ${j.date}`, '',
    `Machine: ${j.machine}; load average ${j.loadAverageAtStart.join(' ')} at start. Model ${j.model}, completions of at most ${j.maxTokens} tokens; `
      + `each request twice on the same cache, interleaved (as shipped, then ${j.setting}) per sample. Command: \`${j.command}\`.`, '',
    `| typed | requests | p50 / p95, as shipped | decode per token, as shipped | p50 / p95, ${j.setting} | decode per token | model runs, as shipped | ${j.setting} | same completion |`,
    '|---|---|---|---|---|---|---|---|---|',
    ...rows, '',
  ].join('\n');
}
