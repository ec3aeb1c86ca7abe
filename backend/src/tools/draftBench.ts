// `vffn bench-drafts`: what drafting from the previous completion (drafts.ts historyLookup) does to
// warm completions, as an A/B in one process. For each sample the cold completion runs, then the warm
// one with history drafts on; the cold one again, then the warm one with them off (so each warm
// request finds the same cache), in two scenarios: the user types the file's next character (what
// `npm run bench:peer` measures), or the first character of the ghost text shown (typing through it).
// Reports warm latency and model runs both ways, and whether the completions are the same.
import * as path from 'node:path';
import type { CompleteResult } from '../../../common/protocol';
import type { Engine } from '../engine/engine';
import { defaultReportPath, MIN_FILE_CHARS, repoRoot, roundedPercentile, runStart, SOURCE_DIRS, writeReports } from './bench';
import { pickSamples, Sample, sourceFiles, typed } from './samples';

const MAX_TOKENS = 32;
const ENV = 'VFFN_HISTORY_DRAFT_TOKENS';

interface Warm { totalMs: number; runs: number; tokens: number; completion: string; }
interface Pair { file: string; scenario: Scenario; on: Warm; off: Warm; }
type Scenario = 'next character of the file' | 'first character of the ghost text';

export async function runDraftBench(engine: Engine, opts: { samples?: number; out?: string }): Promise<{ markdown: string; json: unknown }> {
  const run = runStart();
  const root = repoRoot();
  const samples = pickSamples(sourceFiles(root, SOURCE_DIRS, MIN_FILE_CHARS), opts.samples ?? 20, 42);
  const m = engine.activeModel!;
  const complete = async (id: string, text: { prefix: string; suffix: string }) => {
    const r = await engine.complete({ requestId: id, languageId: '', ...text, maxTokens: MAX_TOKENS });
    if (r.error) throw new Error(`${id}: ${r.error}`);
    return r;
  };
  const warmRun = async (id: string, s: Sample, next: (cold: CompleteResult) => { prefix: string; suffix: string } | null, history: boolean) => {
    m.kv.clear();
    const cold = await complete(`${id}-cold`, s);
    const text = next(cold);
    if (!text) return null;
    if (history) delete process.env[ENV];
    else process.env[ENV] = '0';
    try {
      // The model runs of the warm request (a run checks a whole draft at once).
      const runsBefore = m.session.runs;
      const r = await complete(`${id}-warm`, text);
      return { totalMs: r.timings.totalMs, runs: m.session.runs - runsBefore, tokens: r.timings.generatedTokens, completion: r.completion };
    } finally {
      delete process.env[ENV];
    }
  };
  const scenarios: [Scenario, (s: Sample) => (cold: CompleteResult) => { prefix: string; suffix: string } | null][] = [
    ['next character of the file', (s) => () => typed(s, 1)],
    ['first character of the ghost text', (s) => (cold) => (cold.completion ? { prefix: s.prefix + cold.completion[0], suffix: s.suffix } : null)],
  ];
  const pairs: Pair[] = [];
  await complete('warmup', samples[0]);
  for (const [i, s] of samples.entries()) {
    for (const [scenario, next] of scenarios) {
      const on = await warmRun(`s${i}`, s, next(s), true);
      const off = await warmRun(`s${i}`, s, next(s), false);
      if (on && off) pairs.push({ file: path.relative(root, s.file), scenario, on, off });
    }
  }
  const summary = scenarios.map(([scenario]) => summarize(scenario, pairs.filter((p) => p.scenario === scenario)));
  const json = {
    ...run,
    command: 'node dist/cli.js bench-drafts', model: m.name, maxTokens: MAX_TOKENS, summary, pairs,
  };
  const markdown = toMarkdown(json);
  const out = writeReports(opts.out ?? defaultReportPath(root, 'drafts', json.date), json, markdown);
  return { markdown: `${markdown}\nreport: ${out}\n`, json };
}

function summarize(scenario: Scenario, pairs: Pair[]) {
  const side = (f: (x: Pair) => Warm) => ({
    p50Ms: roundedPercentile(pairs.map((x) => f(x).totalMs), 50), p95Ms: roundedPercentile(pairs.map((x) => f(x).totalMs), 95),
    runs: pairs.reduce((n, x) => n + f(x).runs, 0), tokens: pairs.reduce((n, x) => n + f(x).tokens, 0),
  });
  return {
    scenario, requests: pairs.length, on: side((x) => x.on), off: side((x) => x.off),
    // Drafts never change greedy choices, but a run over several tokens can round differently from one-token runs.
    sameCompletion: pairs.filter((x) => x.on.completion === x.off.completion).length,
  };
}

function toMarkdown(j: { date: string; machine: string; loadAverageAtStart: number[]; model: string; maxTokens: number; summary: ReturnType<typeof summarize>[] }): string {
  const rows = j.summary.map((s) => `| ${s.scenario} | ${s.requests} | ${s.on.p50Ms} / ${s.on.p95Ms} ms | ${s.off.p50Ms} / ${s.off.p95Ms} ms | `
    + `${s.on.runs} for ${s.on.tokens} tokens | ${s.off.runs} for ${s.off.tokens} tokens | ${s.sameCompletion} of ${s.requests} |`);
  return [
    `# Drafts from the previous completion: warm completions with and without, ${j.date}`, '',
    `Machine: ${j.machine}; load average ${j.loadAverageAtStart.join(' ')} at start. Model ${j.model}, single-line completions of at most ${j.maxTokens} tokens; `
      + 'each warm request after the same cold one, interleaved (on, off) per sample. Command: `node dist/cli.js bench-drafts`.', '',
    '| typed | requests | warm p50 / p95, history drafts on | off | model runs, on | off | same completion |',
    '|---|---|---|---|---|---|---|',
    ...rows, '',
  ].join('\n');
}
