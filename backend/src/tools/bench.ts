// `vffn bench`: single-line completions in real source files (repo + node_modules), cold (empty KV
// cache) and warm (after typing one more character); time to first token, decode speed, RSS, and the
// per-step decode cost grouped by the token's mean loop count ℓ. Writes JSON + markdown reports.
import { mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { CompleteResult } from '../../../common/protocol';
import type { Engine } from '../engine/engine';
import { Generator, seededRng } from '../engine/generator';
import { KvCache } from '../engine/kvCache';
import { chooseThreads } from '../engine/providers';
import { percentile } from '../engine/telemetry';
import { pickSamples, Sample, sourceFiles, typed } from './samples';

export interface BenchOptions {
  models: string[];                // model folders; empty = the default model
  out?: string;                    // JSON report path; markdown goes beside it
  samples?: number;
  engineFor: (dir: string | undefined) => Promise<Engine>;
}

interface Stat { p50: number | null; p95: number | null; }

export const SOURCE_DIRS = [
  'backend/src', 'backend/src/engine', 'backend/src/tools', 'common', 'models/toolchain', 'extension/src',
  'node_modules/vscode-languageserver/lib/common', 'node_modules/vscode-jsonrpc/lib/common',
  'node_modules/vscode-languageserver-protocol/lib/common', 'node_modules/onnxruntime-common/lib',
  'node_modules/esbuild/lib', 'node_modules/tsx/dist',
];
export const MIN_FILE_CHARS = 8000;
const MAX_TOKENS = 32;

export async function runBench(opts: BenchOptions): Promise<{ markdown: string; json: unknown }> {
  const run = runStart();
  const root = repoRoot();
  const samples = pickSamples(sourceFiles(root, SOURCE_DIRS, MIN_FILE_CHARS), opts.samples ?? 20, 42);
  const rssStart = process.memoryUsage.rss();
  const reports = [];
  for (const dir of opts.models.length ? opts.models : [undefined]) {
    const engine = await opts.engineFor(dir);
    reports.push(await benchModel(engine, samples));
    await engine.dispose();
  }
  const json = {
    ...run,
    node: process.version,
    samples: samples.length,
    sampleFiles: samples.map((s) => path.relative(root, s.file)),
    rssStartBytes: rssStart,
    models: reports,
  };
  const markdown = toMarkdown(json);
  const out = writeReports(opts.out ?? defaultReportPath(root, 'bench', json.date), json, markdown);
  return { markdown: `${markdown}\nreport: ${out}\n`, json };
}

async function benchModel(engine: Engine, samples: Sample[]) {
  const m = engine.activeModel!;
  const cold: CompleteResult[] = [];
  const warm: CompleteResult[] = [];
  let rssMax = 0;
  // One untimed request so first-call costs (allocations, lazy init) do not land on sample 1.
  await engine.complete({ requestId: 'warmup', languageId: '', prefix: samples[0].prefix, suffix: samples[0].suffix, maxTokens: 4 });
  for (const [i, s] of samples.entries()) {
    m.kv.clear();
    cold.push(await engine.complete({ requestId: `c${i}`, languageId: '', prefix: s.prefix, suffix: s.suffix, maxTokens: MAX_TOKENS }));
    warm.push(await engine.complete({ requestId: `w${i}`, languageId: '', ...typed(s, 1), maxTokens: MAX_TOKENS }));
    rssMax = Math.max(rssMax, process.memoryUsage.rss());
  }
  const byLoops = await stepCostByLoops(engine);
  const decodeRates = [...cold, ...warm].filter((r) => r.timings.generatedTokens > 1 && r.timings.decodeMs > 0)
    .map((r) => ((r.timings.generatedTokens - 1) / r.timings.decodeMs) * 1000);
  const pick = (rs: CompleteResult[], f: (r: CompleteResult) => number) => stat(rs.map(f));
  return {
    model: m.name,
    kind: m.manifest.architecture.kind,
    parameters: m.manifest.architecture.parameters ?? null,
    provider: m.session.activeProvider,
    providerReason: m.session.provider.reason,
    intraOpThreads: chooseThreads(0),
    cold: {
      totalMs: pick(cold, (r) => r.timings.totalMs), firstTokenMs: pick(cold, (r) => r.timings.firstTokenMs),
      tokenizeMs: pick(cold, (r) => r.timings.tokenizeMs), prefillMs: pick(cold, (r) => r.timings.prefillMs), promptTokens: pick(cold, (r) => r.timings.promptTokens),
      generatedTokens: pick(cold, (r) => r.timings.generatedTokens),
    },
    warm: {
      totalMs: pick(warm, (r) => r.timings.totalMs), firstTokenMs: pick(warm, (r) => r.timings.firstTokenMs),
      tokenizeMs: pick(warm, (r) => r.timings.tokenizeMs), prefillMs: pick(warm, (r) => r.timings.prefillMs), reusedTokens: pick(warm, (r) => r.timings.reusedTokens),
      processedTokens: pick(warm, (r) => r.timings.promptTokens - r.timings.reusedTokens),
      generatedTokens: pick(warm, (r) => r.timings.generatedTokens),
    },
    decodeTokensPerSecond: stat(decodeRates),
    stopReasons: countBy([...cold, ...warm].map((r) => r.stopReason)),
    errors: [...cold, ...warm].filter((r) => r.error).map((r) => r.error),
    rssMaxBytes: rssMax,
    rssEndBytes: process.memoryUsage.rss(),
    stepMsByMeanLoops: byLoops,
  };
}

/** Decodes without stop rules and groups each step's time by the fed token's mean ℓ (rounded). */
async function stepCostByLoops(engine: Engine): Promise<Record<string, { steps: number; medianMs: number | null }>> {
  const m = engine.activeModel!;
  const ctx = m.manifest.architecture.context_length;
  const groups = new Map<number, number[]>();
  const text = readFileSync(path.join(repoRoot(), 'backend', 'src', 'engine', 'engine.ts'), 'utf8');
  const all = m.tokenizer.encode(text);
  const cache = new KvCache(m.session.kv);
  try {
    for (let rep = 0; rep < 3; rep++) {
      const promptLen = Math.min(256, Math.floor(ctx / 4));
      const start = (rep * 397) % Math.max(1, all.length - promptLen);
      const prompt = all.slice(start, start + promptLen);
      cache.clear();
      const gen = new Generator(m.session, cache, { temperature: 1, topP: 1, stopIds: [], rng: seededRng(rep + 1) });
      await gen.appendTokens(prompt);
      const n = Math.min(128, ctx - prompt.length - 1);
      for (let i = 0; i < n; i++) {
        const t = await gen.nextToken();
        const mean = t.routing.loops.reduce((a, b) => a + b, 0) / Math.max(1, t.routing.loops.length);
        const key = Math.round(mean);
        groups.set(key, [...(groups.get(key) ?? []), t.stepMs]);
      }
    }
  } finally {
    cache.dispose();
  }
  const out: Record<string, { steps: number; medianMs: number | null }> = {};
  for (const k of [...groups.keys()].sort()) {
    const v = groups.get(k)!;
    out[`l${k}`] = { steps: v.length, medianMs: round2(percentile([...v].sort((a, b) => a - b), 50)) };
  }
  return out;
}

export function repoRoot(): string {
  // dist/cli.js (bundled) or backend/src/tools/bench.ts (tsx): the repository is one or three folders up.
  for (const d of [path.resolve(__dirname, '..'), path.resolve(__dirname, '..', '..', '..')]) {
    try {
      if (statSync(path.join(d, 'package.json')).isFile() && statSync(path.join(d, 'node_modules')).isDirectory()) return d;
    } catch {
      // keep looking
    }
  }
  return process.cwd();
}

/**
 * When and where a benchmark run started: the date, the machine and its load average then (the dev VM
 * is shared: a high load means other work competed for the cores). Taken before the runs.
 */
export function runStart(): { date: string; machine: string; loadAverageAtStart: number[] } {
  return { date: new Date().toISOString(), machine: machineName(), loadAverageAtStart: os.loadavg().map((x) => Math.round(x * 100) / 100) };
}

export function machineName(): string {
  const cpus = os.cpus();
  return `${cpus.length}× ${cpus[0]?.model ?? 'unknown CPU'}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, ${os.platform()}-${os.arch()}`;
}

function stat(xs: number[]): Stat {
  const s = [...xs].sort((a, b) => a - b);
  return { p50: round2(percentile(s, 50)), p95: round2(percentile(s, 95)) };
}

/** The q-th percentile of unsorted values, rounded to a whole number (null for none). */
export function roundedPercentile(xs: readonly number[], q: number): number | null {
  const v = percentile([...xs].sort((a, b) => a - b), q);
  return v === null ? null : Math.round(v);
}

function round2(x: number | null): number | null {
  return x === null ? null : Math.round(x * 100) / 100;
}

function countBy(xs: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const x of xs) out[x] = (out[x] ?? 0) + 1;
  return out;
}

/** bench/results/KIND-DATE.json, the date made safe for a file name. */
export function defaultReportPath(root: string, kind: string, isoDate: string): string {
  return path.join(root, 'bench', 'results', `${kind}-${isoDate.replace(/[:.]/g, '-')}.json`);
}

/** Writes a benchmark's JSON report to `file` and its markdown beside it (FILE.md); returns `file`. */
export function writeReports(file: string, json: unknown, markdown: string): string {
  mkdirSync(path.dirname(file), { recursive: true });
  writeAtomic(file, `${JSON.stringify(json, null, 2)}\n`);
  writeAtomic(`${file.replace(/\.json$/, '')}.md`, markdown);
  return file;
}

/** Reports are written to a temporary name and renamed: a cut-off run leaves no half file. */
export function writeAtomic(file: string, text: string): void {
  writeFileSync(`${file}.tmp`, text);
  renameSync(`${file}.tmp`, file);
}

type BenchJson = { date: string; machine: string; loadAverageAtStart: number[]; node: string; samples: number; models: Awaited<ReturnType<typeof benchModel>>[] };

function toMarkdown(j: BenchJson): string {
  const f = (s: Stat) => `${s.p50 ?? '–'} / ${s.p95 ?? '–'}`;
  const mb = (b: number) => `${(b / 2 ** 20).toFixed(0)} MB`;
  const lines = [
    `# vffn bench, ${j.date}`,
    '',
    `Machine: ${j.machine} (load average ${j.loadAverageAtStart.join(' ')} at start); Node ${j.node}; ${j.samples} single-line completions in real source files, max ${MAX_TOKENS} tokens; figures are p50 / p95.`,
    '',
    '| model | provider | cold total ms | cold first token ms | cold prefill ms (prompt tokens p50) | warm total ms | warm first token ms | warm tokenize ms | warm tokens run (reused p50) | decode tok/s | RSS max |',
    '|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const m of j.models) {
    lines.push(`| ${m.model} (${m.kind}) | ${m.provider} | ${f(m.cold.totalMs)} | ${f(m.cold.firstTokenMs)} | ${f(m.cold.prefillMs)} (${m.cold.promptTokens.p50}) | ` +
      `${f(m.warm.totalMs)} | ${f(m.warm.firstTokenMs)} | ${f(m.warm.tokenizeMs)} | ${f(m.warm.processedTokens)} (${m.warm.reusedTokens.p50}) | ${f(m.decodeTokensPerSecond)} | ${mb(m.rssMaxBytes)} |`);
  }
  lines.push('', 'Decode step time by the fed token\'s mean ℓ over layers (sampled decode, no stop rules):', '');
  for (const m of j.models) {
    const parts = Object.entries(m.stepMsByMeanLoops).map(([k, v]) => `ℓ≈${k.slice(1)}: ${v.medianMs} ms (${v.steps} steps)`);
    lines.push(`- ${m.model}: ${parts.join('; ') || 'no data'}`);
    lines.push(`- ${m.model} stop reasons: ${JSON.stringify(m.stopReasons)}${m.errors.length ? `; errors: ${m.errors.slice(0, 3).join(' | ')}` : ''}`);
  }
  return `${lines.join('\n')}\n`;
}

/** Requests per place in the soak: a user types about this many characters where the cursor is, then moves. */
export const SOAK_KEYSTROKES_PER_PLACE = 12;

/**
 * `vffn soak`: many completions as a user would ask for them, RSS sampled along the way, to show memory
 * stays flat: at each place (a real file's line) one request per typed character, then the next place
 * (a cold prompt); every 31st request cancelled, every 97th binary input.
 */
export async function runSoak(engine: Engine, requests: number, log: (line: string) => void): Promise<{ rssBytes: number[]; errors: number }> {
  const samples = pickSamples(sourceFiles(repoRoot(), SOURCE_DIRS, MIN_FILE_CHARS), 50, 42);
  const rss: number[] = [];
  let errors = 0;
  // 40 samples: a run stopped early (10,000 requests take hours on two cores) still shows the curve.
  const every = Math.max(1, Math.floor(requests / 40));
  const t0 = performance.now();
  for (let i = 0; i < requests; i++) {
    const s = samples[Math.floor(i / SOAK_KEYSTROKES_PER_PLACE) % samples.length];
    const t = typed(s, i % SOAK_KEYSTROKES_PER_PLACE);
    const prefix = i % 97 === 0 ? `bad\0input${t.prefix}` : t.prefix;
    const signal = { cancelled: i % 31 === 0 };
    const r = await engine.complete({ requestId: String(i), languageId: '', prefix, suffix: t.suffix, maxTokens: 8 }, signal);
    if (r.error && !/binary/.test(r.error)) errors++;
    if (i % every === 0 || i === requests - 1) {
      rss.push(process.memoryUsage.rss());
      log(`${i + 1}/${requests} requests, ${((performance.now() - t0) / 1000).toFixed(0)} s, RSS ${(rss[rss.length - 1] / 2 ** 20).toFixed(1)} MB, JS heap ${(process.memoryUsage().heapUsed / 2 ** 20).toFixed(1)} MB, array buffers ${(process.memoryUsage().arrayBuffers / 2 ** 20).toFixed(1)} MB`);
    }
  }
  return { rssBytes: rss, errors };
}
