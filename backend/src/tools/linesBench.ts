// `vffn bench-lines`: writing new lines deep in a long file. The extension sends the last N lines
// before the cursor as the prefix (versatileffn.context.prefixLines, 256), so past line N every Enter
// moves the window's start. The bench writes the same lines of a real file twice, once with the
// request's prefixOffset (the prompt's cut anchored to the document) and once without (anchored to
// the window), and reports the prompt tokens each request had to run again and its latency.
import * as path from 'node:path';
import { readFileSync } from 'node:fs';
import type { Engine } from '../engine/engine';
import { defaultReportPath, MIN_FILE_CHARS, repoRoot, roundedPercentile, runStart, SOURCE_DIRS, writeReports } from './bench';
import { sourceFiles } from './samples';

const MAX_TOKENS = 16;
type Mode = 'anchored to the document' | 'anchored to the window';

interface Step { line: number; rerunTokens: number; promptTokens: number; totalMs: number; }

export async function runLinesBench(engine: Engine, opts: { lines?: number; window?: number; out?: string }): Promise<{ markdown: string; json: unknown }> {
  const run = runStart();
  const root = repoRoot();
  const window = opts.window ?? 256;
  const count = opts.lines ?? 40;
  // The longest source file: real code, deep enough for the window to slide.
  const file = sourceFiles(root, SOURCE_DIRS, MIN_FILE_CHARS)
    .map((f) => ({ f, lines: readFileSync(f, 'utf8').split('\n') }))
    .sort((a, b) => b.lines.length - a.lines.length || a.f.localeCompare(b.f))[0];
  if (!file || file.lines.length < window + count + 1) throw new Error(`no source file has ${window + count + 1} lines`);
  const lines = file.lines;
  const start = window + Math.floor((lines.length - window - count) / 2);
  const m = engine.activeModel!;
  const write = async (mode: Mode): Promise<Step[]> => {
    m.kv.clear();
    const steps: Step[] = [];
    for (let line = start; line < start + count; line++) {
      // The cursor at the start of `line`, the lines before it written, Enter just pressed.
      const first = Math.max(0, line - window);
      const prefix = lines.slice(first, line).join('\n') + '\n';
      const prefixOffset = first > 0 ? lines.slice(0, first).join('\n').length + 1 : 0;
      const r = await engine.complete({
        requestId: `l${line}`, languageId: '', prefix, suffix: '', maxTokens: MAX_TOKENS,
        prefixOffset: mode === 'anchored to the document' ? prefixOffset : undefined,
      });
      if (r.error) throw new Error(`line ${line}: ${r.error}`);
      const t = r.timings;
      steps.push({ line, rerunTokens: t.promptTokens - t.reusedTokens, promptTokens: t.promptTokens, totalMs: t.totalMs });
    }
    return steps;
  };
  await write('anchored to the document');   // warm-up: the first pass pays for loading pages
  // Two rounds in opposite orders, so a machine that slows down during the run favours neither side.
  const runs: { mode: Mode; steps: Step[] }[] = [];
  for (const order of [['anchored to the document', 'anchored to the window'], ['anchored to the window', 'anchored to the document']] as Mode[][]) {
    for (const mode of order) runs.push({ mode, steps: await write(mode) });
  }
  const summary = (['anchored to the document', 'anchored to the window'] as Mode[]).map((mode) => summarize(mode, runs.filter((r) => r.mode === mode).flatMap((r) => r.steps)));
  const json = {
    ...run,
    command: 'node dist/cli.js bench-lines', model: m.name, promptBudget: m.promptTokens, file: path.relative(root, file.f),
    window, lines: [start, start + count], maxTokens: MAX_TOKENS, summary, runs,
  };
  const markdown = toMarkdown(json);
  const out = writeReports(opts.out ?? defaultReportPath(root, 'lines', json.date), json, markdown);
  return { markdown: `${markdown}\nreport: ${out}\n`, json };
}

function summarize(mode: Mode, steps: Step[]) {
  return {
    mode, requests: steps.length,
    rerunTokens: steps.reduce((n, s) => n + s.rerunTokens, 0),
    rerunP50: roundedPercentile(steps.map((s) => s.rerunTokens), 50),
    fullPrompts: steps.filter((s) => s.rerunTokens > s.promptTokens / 2).length,
    p50Ms: roundedPercentile(steps.map((s) => s.totalMs), 50), p95Ms: roundedPercentile(steps.map((s) => s.totalMs), 95),
  };
}

function toMarkdown(j: { date: string; machine: string; loadAverageAtStart: number[]; model: string; promptBudget: number; file: string;
  window: number; lines: number[]; maxTokens: number; summary: ReturnType<typeof summarize>[] }): string {
  const rows = j.summary.map((s) => `| ${s.mode} | ${s.requests} | ${s.rerunTokens} | ${s.rerunP50} | ${s.fullPrompts} | ${s.p50Ms} / ${s.p95Ms} ms |`);
  return [
    `# Writing lines deep in a file: the prompt's cut anchored to the document or to the prefix window, ${j.date}`, '',
    `Machine: ${j.machine}; load average ${j.loadAverageAtStart.join(' ')} at start. Model ${j.model} (prompt budget ${j.promptBudget} tokens); `
      + `${j.file}, lines ${j.lines[0]}–${j.lines[1] - 1} written one by one (a completion after each Enter, at most ${j.maxTokens} tokens), `
      + `the prefix the last ${j.window} lines as the extension sends it; two rounds per mode in opposite orders. Command: \`node dist/cli.js bench-lines\`.`, '',
    '| prompt cut | requests | prompt tokens run again | per request, median | more than half the prompt again | latency p50 / p95 |',
    '|---|---|---|---|---|---|',
    ...rows, '',
  ].join('\n');
}
