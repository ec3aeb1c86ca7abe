// `vffn bench-typing`: what a user waits for per keystroke while writing real code. At each place
// (samples.ts: a real file, the cursor mid-line, the rest of the line not written yet) a cold
// completion runs, then the rest of the line is typed as its author wrote it, one character at a time.
// Before each keystroke's request the extension's own completion cache is asked, as its inline provider
// does (extension/src/completion/cache.ts, the same class): a keystroke that types through the ghost
// text is answered there and no request is sent. The other keystrokes go to the engine. Each place is
// typed twice, as shipped and with one setting changed (`--ab NAME=VALUE`, default VFFN_REUSE_PICKS=0:
// the picks replay off, engine/replay.ts), so an engine technique is measured on the requests an editor
// really sends.
import * as path from 'node:path';
import type { CompleteResult } from '../../../common/protocol';
import { CompletionCache } from '../../../extension/src/completion/cache';
import type { Engine } from '../engine/engine';
import { defaultReportPath, MIN_FILE_CHARS, repoRoot, roundedPercentile, runStart, SOURCE_DIRS, writeReports } from './bench';
import { pickSamples, Sample, sourceFiles, typed } from './samples';

const MAX_TOKENS = 32;
/** Keystrokes typed at each place (fewer when the line ends first). */
const KEYSTROKES = 12;
/** The setting the second pass changes, unless `--ab` names another. */
export const DEFAULT_AB = 'VFFN_REUSE_PICKS=0';

type Source = 'editor cache' | 'engine';
interface Keystroke { k: number; source: Source; totalMs: number; runs: number; replayed: number; completion: string }
/** `changed`: the pass ran with the A/B setting (else as shipped). */
interface Pass { changed: boolean; file: string; coldMs: number; keys: Keystroke[] }

/** `NAME=VALUE` → [NAME, VALUE]; throws on anything else. */
export function parseAb(ab: string): [string, string] {
  const m = /^(VFFN_[A-Z0-9_]+)=(.*)$/.exec(ab);
  if (!m) throw new Error(`--ab must be NAME=VALUE with a VFFN_ setting, got "${ab}"`);
  return [m[1], m[2]];
}

/** Types one place as shipped or with `setting` set; returns every keystroke's source and latency. */
async function typePlace(engine: Engine, s: Sample, id: string, setting: [string, string] | null): Promise<Pass> {
  const m = engine.activeModel!;
  const cache = new CompletionCache(100);
  const ask = async (rid: string, text: { prefix: string; suffix: string }): Promise<CompleteResult> => {
    const r = await engine.complete({ requestId: rid, languageId: '', ...text, maxTokens: MAX_TOKENS });
    if (r.error) throw new Error(`${rid}: ${r.error}`);
    if (r.completion) cache.set('', text.prefix, text.suffix, { completion: r.completion, requestId: rid, model: m.name });
    return r;
  };
  const saved = setting ? process.env[setting[0]] : undefined;
  if (setting) process.env[setting[0]] = setting[1];
  try {
    m.kv.clear();
    const cold = await ask(`${id}-cold`, s);
    const keys: Keystroke[] = [];
    for (let k = 1; k <= Math.min(KEYSTROKES, s.unwritten.length); k++) {
      const text = typed(s, k);
      const hit = cache.get('', text.prefix, text.suffix);
      if (hit) {
        keys.push({ k, source: 'editor cache', totalMs: 0, runs: 0, replayed: 0, completion: hit.rest });
        continue;
      }
      const before = m.session.runs;
      const r = await ask(`${id}-${k}`, text);
      keys.push({ k, source: 'engine', totalMs: r.timings.totalMs, runs: m.session.runs - before, replayed: r.timings.replayedTokens, completion: r.completion });
    }
    return { changed: setting !== null, file: '', coldMs: cold.timings.totalMs, keys };
  } finally {
    if (setting) {
      if (saved === undefined) delete process.env[setting[0]];
      else process.env[setting[0]] = saved;
    }
  }
}

export async function runTypingBench(engine: Engine, opts: { samples?: number; out?: string; ab?: string }): Promise<{ markdown: string; json: unknown }> {
  const ab = opts.ab ?? DEFAULT_AB;
  const setting = parseAb(ab);
  const run = runStart();
  const root = repoRoot();
  const samples = pickSamples(sourceFiles(root, SOURCE_DIRS, MIN_FILE_CHARS), opts.samples ?? 20, 42);
  await engine.complete({ requestId: 'warmup', languageId: '', ...samples[0], maxTokens: 4 });
  const passes: Pass[] = [];
  for (const [i, s] of samples.entries()) {
    const file = path.relative(root, s.file);
    // Interleaved per place, so both passes meet the same minutes of a shared machine.
    for (const changed of [false, true]) passes.push({ ...(await typePlace(engine, s, `s${i}`, changed ? setting : null)), file });
  }
  const summary = [false, true].map((changed) => summarize(changed ? ab : 'as shipped', passes.filter((p) => p.changed === changed)));
  const json = {
    ...run, command: `node dist/cli.js bench-typing${opts.ab ? ` --ab ${ab}` : ''}`, model: engine.activeModel!.name, maxTokens: MAX_TOKENS,
    keystrokesPerPlace: KEYSTROKES, ab, summary, passes,
  };
  const markdown = toMarkdown(json);
  const out = writeReports(opts.out ?? defaultReportPath(root, 'typing', json.date), json, markdown);
  return { markdown: `${markdown}\nreport: ${out}\n`, json };
}

export function summarize(variant: string, passes: readonly Pass[]) {
  const keys = passes.flatMap((p) => p.keys);
  const engineKeys = keys.filter((k) => k.source === 'engine');
  const ms = engineKeys.map((k) => k.totalMs);
  return {
    variant,
    places: passes.length,
    keystrokes: keys.length,
    fromEditorCache: keys.length - engineKeys.length,
    engineRequests: engineKeys.length,
    engineP50Ms: roundedPercentile(ms, 50),
    engineP95Ms: roundedPercentile(ms, 95),
    /** Engine requests that handed out recorded picks, and the model runs all engine requests took. */
    withReplayedPicks: engineKeys.filter((k) => k.replayed > 0).length,
    modelRuns: engineKeys.reduce((n, k) => n + k.runs, 0),
    /** What the user waits for per keystroke, the editor cache's answers (0 ms) included. */
    perKeystrokeP50Ms: roundedPercentile(keys.map((k) => k.totalMs), 50),
    perKeystrokeP95Ms: roundedPercentile(keys.map((k) => k.totalMs), 95),
  };
}

function toMarkdown(j: {
  date: string; machine: string; loadAverageAtStart: number[]; model: string; maxTokens: number; keystrokesPerPlace: number; ab: string; command: string;
  summary: ReturnType<typeof summarize>[];
}): string {
  const rows = j.summary.map((s) => `| ${s.variant} | ${s.places} | ${s.keystrokes} | ${s.fromEditorCache} | ${s.engineRequests} | `
    + `${s.engineP50Ms} / ${s.engineP95Ms} ms | ${s.withReplayedPicks} | ${s.modelRuns} | ${s.perKeystrokeP50Ms} / ${s.perKeystrokeP95Ms} ms |`);
  return [
    `# Typing real lines: what each keystroke waits for, ${j.date}`, '',
    `Machine: ${j.machine}; load average ${j.loadAverageAtStart.join(' ')} at start. Model ${j.model}; at each place a cold completion, then up to `
      + `${j.keystrokesPerPlace} characters of the rest of the line typed as the file has them, the extension's completion cache asked first; `
      + `completions of at most ${j.maxTokens} tokens; each place typed as shipped, then with ${j.ab}. Command: \`${j.command}\`.`, '',
    '| engine | places | keystrokes | answered by the editor\'s cache | sent to the engine | engine p50 / p95 | engine requests with replayed picks | model runs | per keystroke p50 / p95 |',
    '|---|---|---|---|---|---|---|---|---|',
    ...rows, '',
  ].join('\n');
}
