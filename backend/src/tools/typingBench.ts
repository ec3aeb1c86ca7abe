// `vffn bench-typing`: what a user waits for per keystroke while writing real code. At each place
// (samples.ts: a real file, the cursor mid-line, the rest of the line not written yet) a cold
// completion runs, then the rest of the line is typed as its author wrote it, one character at a time.
// Each request is the one the extension sends by default (placesBench.ts placeParams: its windows of
// lines, 64 tokens at a line's end, 1 s to generate), and its ghost text counts as shown when its first
// line comes ahead of a multi-line completion (CompletePartial), as the extension shows it.
// Before each keystroke's request the extension's own completion cache is asked, as its inline provider
// does (extension/src/completion/cache.ts, the same class): a keystroke that types through the ghost
// text is answered there and no request is sent. The other keystrokes go to the engine. Each place is
// typed twice, as shipped and with one setting changed (`--ab NAME=VALUE`, default VFFN_REUSE_PICKS=0:
// the picks replay off, engine/replay.ts), so an engine technique is measured on the requests an editor
// really sends.
import * as path from 'node:path';
import type { CompleteParams, CompleteResult } from '../../../common/protocol';
import { CompletionCache } from '../../../extension/src/completion/cache';
import type { Engine } from '../engine/engine';
import { defaultReportPath, MIN_FILE_CHARS, repoRoot, roundedPercentile, runStart, SOURCE_DIRS, writeReports } from './bench';
import { placeParams } from './placesBench';
import { pickSamples, Sample, sourceFiles, typed } from './samples';
/** Keystrokes typed at each place (fewer when the line ends first). */
const KEYSTROKES = 12;
/** The setting the second pass changes, unless `--ab` names another. */
export const DEFAULT_AB = 'VFFN_REUSE_PICKS=0';

type Source = 'editor cache' | 'engine';
/** totalMs: the whole completion; shownMs: when ghost text could show (the first line, when it came first); 0 for the editor cache. */
interface Keystroke { k: number; source: Source; totalMs: number; shownMs: number; runs: number; replayed: number; completion: string }
/** `changed`: the pass ran with the A/B setting (else as shipped). */
interface Pass { changed: boolean; file: string; coldMs: number; keys: Keystroke[] }

/** Runs `f` with the environment setting `setting` ([NAME, VALUE]; null: as shipped), then restores what was there. */
export async function withSetting<T>(setting: [string, string] | null, f: () => Promise<T>): Promise<T> {
  if (!setting) return f();
  const [name, value] = setting;
  const saved = process.env[name];
  process.env[name] = value;
  try {
    return await f();
  } finally {
    if (saved === undefined) delete process.env[name];
    else process.env[name] = saved;
  }
}

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
  const ask = async (rid: string, text: { prefix: string; suffix: string }): Promise<{ r: CompleteResult; shownMs: number }> => {
    const params = placeParams(text.prefix, text.suffix, rid);
    let firstLineMs: number | null = null;
    const r = await engine.complete(params, undefined, (p) => {
      firstLineMs = p.elapsedMs;
    });
    if (r.error) throw new Error(`${rid}: ${r.error}`);
    if (r.completion) cache.set('', params.prefix, params.suffix, { completion: r.completion, requestId: rid, model: m.name });
    return { r, shownMs: firstLineMs ?? r.timings.totalMs };
  };
  return withSetting(setting, async () => {
    m.kv.clear();
    const cold = await ask(`${id}-cold`, s);
    const keys: Keystroke[] = [];
    for (let k = 1; k <= Math.min(KEYSTROKES, s.unwritten.length); k++) {
      const text = typed(s, k);
      const window = placeParams(text.prefix, text.suffix, '');
      const hit = cache.get('', window.prefix, window.suffix);
      if (hit) {
        keys.push({ k, source: 'editor cache', totalMs: 0, shownMs: 0, runs: 0, replayed: 0, completion: hit.rest });
        continue;
      }
      const before = m.session.runs;
      const { r, shownMs } = await ask(`${id}-${k}`, text);
      keys.push({
        k, source: 'engine', totalMs: r.timings.totalMs, shownMs, runs: m.session.runs - before, replayed: r.timings.replayedTokens, completion: r.completion,
      });
    }
    return { changed: setting !== null, file: '', coldMs: cold.r.timings.totalMs, keys };
  });
}

export async function runTypingBench(engine: Engine, opts: { samples?: number; out?: string; ab?: string }): Promise<{ markdown: string; json: unknown }> {
  const ab = opts.ab ?? DEFAULT_AB;
  const setting = parseAb(ab);
  const run = runStart();
  const root = repoRoot();
  const samples = pickSamples(sourceFiles(root, SOURCE_DIRS, MIN_FILE_CHARS), opts.samples ?? 20, 42);
  await engine.complete({ ...placeParams(samples[0].prefix, samples[0].suffix, 'warmup'), maxTokens: 4 });
  const passes: Pass[] = [];
  for (const [i, s] of samples.entries()) {
    const file = path.relative(root, s.file);
    // Interleaved per place, so both passes meet the same minutes of a shared machine.
    for (const changed of [false, true]) passes.push({ ...(await typePlace(engine, s, `s${i}`, changed ? setting : null)), file });
  }
  const summary = [false, true].map((changed) => summarize(changed ? ab : 'as shipped', passes.filter((p) => p.changed === changed)));
  const json = {
    ...run, command: `node dist/cli.js bench-typing${opts.ab ? ` --ab ${ab}` : ''}`, model: engine.activeModel!.name,
    request: placeParams('', '', ''), keystrokesPerPlace: KEYSTROKES, ab, summary, passes,
  };
  const markdown = toMarkdown(json);
  const out = writeReports(opts.out ?? defaultReportPath(root, 'typing', json.date), json, markdown);
  return { markdown: `${markdown}\nreport: ${out}\n`, json };
}

export function summarize(variant: string, passes: readonly Pass[]) {
  const keys = passes.flatMap((p) => p.keys);
  const engineKeys = keys.filter((k) => k.source === 'engine');
  const ms = engineKeys.map((k) => k.totalMs);
  const shown = engineKeys.map((k) => k.shownMs);
  return {
    variant,
    places: passes.length,
    keystrokes: keys.length,
    fromEditorCache: keys.length - engineKeys.length,
    engineRequests: engineKeys.length,
    engineP50Ms: roundedPercentile(ms, 50),
    engineP95Ms: roundedPercentile(ms, 95),
    /** When the engine's ghost text could show: its first line, when that came ahead of the rest. */
    engineShownP50Ms: roundedPercentile(shown, 50),
    engineShownP95Ms: roundedPercentile(shown, 95),
    /** Engine requests that handed out recorded picks, and the model runs all engine requests took. */
    withReplayedPicks: engineKeys.filter((k) => k.replayed > 0).length,
    modelRuns: engineKeys.reduce((n, k) => n + k.runs, 0),
    /** What the user waits for per keystroke until ghost text shows, the editor cache's answers (0 ms) included. */
    perKeystrokeP50Ms: roundedPercentile(keys.map((k) => k.shownMs), 50),
    perKeystrokeP95Ms: roundedPercentile(keys.map((k) => k.shownMs), 95),
  };
}

function toMarkdown(j: {
  date: string; machine: string; loadAverageAtStart: number[]; model: string; request: CompleteParams; keystrokesPerPlace: number; ab: string; command: string;
  summary: ReturnType<typeof summarize>[];
}): string {
  const rows = j.summary.map((s) => `| ${s.variant} | ${s.places} | ${s.keystrokes} | ${s.fromEditorCache} | ${s.engineRequests} | `
    + `${s.engineP50Ms} / ${s.engineP95Ms} ms | ${s.engineShownP50Ms} / ${s.engineShownP95Ms} ms | ${s.withReplayedPicks} | ${s.modelRuns} | ${s.perKeystrokeP50Ms} / ${s.perKeystrokeP95Ms} ms |`);
  return [
    `# Typing real lines: what each keystroke waits for, ${j.date}`, '',
    `Machine: ${j.machine}; load average ${j.loadAverageAtStart.join(' ')} at start. Model ${j.model}; at each place a cold completion, then up to `
      + `${j.keystrokesPerPlace} characters of the rest of the line typed as the file has them, the extension's completion cache asked first; `
      + `the extension's default request (at most ${j.request.maxTokens} tokens, ${j.request.maxTimeMs} ms to generate); `
      + `each place typed as shipped, then with ${j.ab}. Command: \`${j.command}\`.`, '',
    '| engine | places | keystrokes | answered by the editor\'s cache | sent to the engine | engine p50 / p95, whole completion | engine p50 / p95, ghost text shown | '
      + 'engine requests with replayed picks | model runs | per keystroke until ghost text, p50 / p95 |',
    '|---|---|---|---|---|---|---|---|---|---|',
    ...rows, '',
  ].join('\n');
}
