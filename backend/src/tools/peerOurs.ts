// Our side of `npm run bench:peer`, run as its own child process (so its peak RSS is its own). Every
// request goes through Engine.complete, as the editor's do; the child also writes the plan: the exact
// prompt ids each request ran and how many tokens it picked, which the llama.cpp child then replays.
//   node dist/peer-ours.js --model DIR --threads N --samples N --decode-tokens N --prefill-runs N --plan FILE --out FILE
import { readFileSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { CompleteResult } from '../../../common/protocol';
import { MIN_FILE_CHARS, SOURCE_DIRS } from './bench';
import { Engine } from '../engine/engine';
import { DEFAULT_MAX_PROMPT_TOKENS } from '../engine/prompt';
import { prefillChunk } from '../engine/generator';
import { reusePicks } from '../engine/replay';
import { pickSamples, sourceFiles, typed } from './samples';
import { byFolderInTurn, engineIds, exactPromptSets, firstUnanswered, Plan, PlanRequest, PREFILL_RUNS, PREFILL_SIZES, PromptSource, SUFFIX_TOKENS } from './peerPrompts';
import type { RunTiming, SideResult } from './peerReport';

/** Single-line completions generate at most this many tokens, as in `npm run bench`. */
const COMPLETION_MAX_TOKENS = 32;

function flag(argv: string[], name: string): string | undefined {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : undefined;
}

/** The highest resident set size of this process so far (Linux), else the current RSS. */
function peakRssBytes(): number {
  try {
    const m = /VmHWM:\s+(\d+)\s*kB/.exec(readFileSync('/proc/self/status', 'utf8'));
    if (m) return Number(m[1]) * 1024;
  } catch {
    // not Linux
  }
  return process.memoryUsage.rss();
}

function repoRoot(): string {
  // dist/peer-ours.js or backend/src/tools/peerOurs.ts
  for (const up of ['..', '../../..']) {
    const d = path.resolve(__dirname, up);
    try {
      if (readFileSync(path.join(d, 'package.json'), 'utf8').includes('"versatileffn-code"')) return d;
    } catch {
      // keep looking
    }
  }
  return process.cwd();
}

/** Tokens the engine picked: the generated ones, plus the stop token it picked and did not feed. */
function picks(r: CompleteResult): number {
  return r.timings.generatedTokens + (r.stopReason === 'eot' ? 1 : 0);
}

function timing(r: CompleteResult): RunTiming {
  const t = r.timings;
  return {
    firstTokenMs: t.firstTokenMs, totalMs: t.totalMs, prefillMs: t.prefillMs,
    promptTokens: t.promptTokens, reusedTokens: t.reusedTokens, generatedTokens: t.generatedTokens,
    // Every generated (non-stop) token is fed to the model after it is picked: decodeMs covers that many steps.
    decodeMsPerToken: t.generatedTokens > 0 && t.decodeMs > 0 ? t.decodeMs / t.generatedTokens : null,
    replayedTokens: t.replayedTokens,
  };
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const modelDir = path.resolve(flag(argv, 'model') ?? 'models/qwen2.5-coder-0.5b-vffn');
  const threads = Number(flag(argv, 'threads') ?? 2);
  const nSamples = Number(flag(argv, 'samples') ?? 20);
  const decodeTokens = Number(flag(argv, 'decode-tokens') ?? 16);
  const prefillRuns = Number(flag(argv, 'prefill-runs') ?? PREFILL_RUNS);
  const planFile = flag(argv, 'plan');
  const outFile = flag(argv, 'out');
  if (!planFile || !outFile) throw new Error('--plan FILE and --out FILE are required');
  const loadAverageAtStart = os.loadavg().map((x) => Math.round(x * 100) / 100);
  const root = repoRoot();

  // The engine may size its prompt budget from a prefill speed it measures at load (issue 10); the
  // bench needs room for 1,000-token prompts and the same prompts on both sides, so it fixes the cap
  // at the default through the documented override.
  process.env.VFFN_MAX_PROMPT_TOKENS = String(DEFAULT_MAX_PROMPT_TOKENS);
  const t0 = performance.now();
  // The llama.cpp side runs on the CPU with `threads` threads: so does ours (no provider calibration).
  const engine = new Engine({ modelDirs: [path.dirname(modelDir)], provider: 'cpu', threads });
  const started = await engine.start(path.basename(modelDir));
  if (!started.ok || started.active !== path.basename(modelDir)) throw new Error(`cannot load ${modelDir}: ${started.error ?? 'another model loaded'}`);
  const loadMs = performance.now() - t0;
  const rssAfterLoadBytes = process.memoryUsage.rss();
  const m = engine.activeModel!;
  const ctx = m.manifest.architecture.context_length;
  const special = m.tokenizer.special;
  const notes: string[] = [];

  const complete = async (id: string, prefix: string, suffix: string, maxTokens: number, maxTimeMs?: number) => {
    const r = await engine.complete({ requestId: id, languageId: '', prefix, suffix, maxTokens, maxTimeMs });
    if (r.error || r.stopReason === 'cancelled' || r.stopReason === 'superseded') throw new Error(`request ${id}: ${r.stopReason} ${r.error ?? ''}`);
    return r;
  };
  const request = (prefix: string, suffix: string, maxTokens: number, r: CompleteResult): PlanRequest => {
    const p = engineIds(m.tokenizer, special, prefix, suffix, ctx, maxTokens, m.manifest.fim.order);
    if (p.ids.length !== r.timings.promptTokens) {
      throw new Error(`the engine ran ${r.timings.promptTokens} prompt tokens where buildPrompt gives ${p.ids.length}: the bench no longer builds the engine's prompt`);
    }
    return { ...p, picks: picks(r) };
  };

  const samples = pickSamples(sourceFiles(root, SOURCE_DIRS, MIN_FILE_CHARS), nSamples, 42);
  // One untimed request so first-call costs (allocations, lazy init) do not land on the first measurement.
  const w = await complete('warmup', samples[0].prefix, samples[0].suffix, 4);
  const warmup = request(samples[0].prefix, samples[0].suffix, 4, w);

  // 1, 2, 4: cold prefill of exact prompt sizes, then decoding after it (the KV cache is cleared first).
  const maxN = Math.max(...PREFILL_SIZES);
  if (maxN + decodeTokens + 1 > ctx) throw new Error(`--decode-tokens ${decodeTokens} does not fit after ${maxN} prompt tokens in ${m.name}'s ${ctx}-token context`);
  const files = sourceFiles(root, SOURCE_DIRS, MIN_FILE_CHARS).map((f) => ({ path: path.relative(root, f), text: readFileSync(f, 'utf8') }));
  // Each run of a size cuts its prompt from another file (up to prefillRuns files, cycled when fewer fit):
  // a median over several texts, where one text's drafts or stop decided a row before.
  const promptSets = exactPromptSets(m.tokenizer, special, byFolderInTurn(files), PREFILL_SIZES,
    { contextLength: ctx, maxTokens: decodeTokens, suffixTokens: SUFFIX_TOKENS, order: m.manifest.fim.order }, prefillRuns);
  const promptFor = (sizeIndex: number, run: number) => promptSets[run % promptSets.length][sizeIndex];
  notes.push(`cold prompts from ${promptSets.length} file${promptSets.length === 1 ? '' : 's'}, one per run (cycled over ${prefillRuns} runs)`);
  const prefill: SideResult['prefill'] = [];
  const planPrefill: Plan['prefill'] = [];
  for (const [k, n] of PREFILL_SIZES.entries()) {
    const runs: RunTiming[] = [];
    const planRuns: PlanRequest[] = [];
    const sources: PromptSource[] = [];
    for (let i = 0; i < prefillRuns; i++) {
      const p = promptFor(k, i);
      m.kv.clear();
      // No time limit that could cut decoding short; the stop rules stay on (there is no switch for them).
      const r = await complete(`prefill${n}-${i}`, p.prefix, p.suffix, decodeTokens, 60_000);
      if (r.timings.promptTokens !== n || r.timings.reusedTokens !== 0) {
        throw new Error(`prefill ${n}: the engine ran ${r.timings.promptTokens} prompt tokens (${r.timings.reusedTokens} reused)`);
      }
      runs.push(timing(r));
      planRuns.push({ ids: p.ids, prefixText: p.prefix, suffixText: p.suffix, picks: picks(r) });
      sources.push({ file: p.file, line: p.line });
      notes.push(`${n}-token prompt at ${p.file}:${p.line}: ${r.timings.generatedTokens} of at most ${decodeTokens} tokens generated (stop: ${r.stopReason})`);
    }
    prefill.push({ promptTokens: n, runs });
    planPrefill.push({ promptTokens: n, sources, runs: planRuns });
  }

  // 2b: decoding after the same prompts with drafting off: one model run per token, as llama.cpp decodes,
  // so the speed of a step shows apart from how often the text at hand lets a draft guess right.
  const plainDecode: NonNullable<SideResult['plainDecode']> = [];
  const draftSetting = process.env.VFFN_DRAFT_TOKENS;
  process.env.VFFN_DRAFT_TOKENS = '0';
  try {
    for (const [k, n] of PREFILL_SIZES.entries()) {
      const runs: RunTiming[] = [];
      for (let i = 0; i < prefillRuns; i++) {
        const p = promptFor(k, i);
        m.kv.clear();
        runs.push(timing(await complete(`plain${n}-${i}`, p.prefix, p.suffix, decodeTokens, 60_000)));
      }
      plainDecode.push({ promptTokens: n, runs });
    }
  } finally {
    if (draftSetting === undefined) delete process.env.VFFN_DRAFT_TOKENS;
    else process.env.VFFN_DRAFT_TOKENS = draftSetting;
  }

  // 3, 4: a single-line completion, then the same after one more character typed (KV cache reused).
  const completions: SideResult['completions'] = [];
  const planCompletions: Plan['completions'] = [];
  for (const [i, s] of samples.entries()) {
    m.kv.clear();
    const cold = await complete(`c${i}`, s.prefix, s.suffix, COMPLETION_MAX_TOKENS);
    const t = typed(s, 1);
    const warm = await complete(`w${i}`, t.prefix, t.suffix, COMPLETION_MAX_TOKENS);
    const file = path.relative(root, s.file);
    const continues = cold.completion.length > 0 && s.unwritten[0] === cold.completion[0];
    const plan: Plan['completions'][number] = {
      file,
      cold: request(s.prefix, s.suffix, COMPLETION_MAX_TOKENS, cold),
      warm: request(t.prefix, t.suffix, COMPLETION_MAX_TOKENS, warm),
    };
    // What an editor sends: the line typed on with the extension's completion cache in front.
    const editorKeystroke = firstUnanswered(s, cold.completion);
    let editor: RunTiming | undefined;
    if (editorKeystroke !== null && editorKeystroke > 1) {
      const e = typed(s, editorKeystroke);
      const r = await complete(`e${i}`, e.prefix, e.suffix, COMPLETION_MAX_TOKENS);
      editor = timing(r);
      plan.editor = request(e.prefix, e.suffix, COMPLETION_MAX_TOKENS, r);
    }
    completions.push({ file, cold: timing(cold), warm: timing(warm), continues, editorKeystroke, ...(editor ? { editor } : {}) });
    planCompletions.push(plan);
  }
  notes.push(`FIM prompt order ${m.manifest.fim.order.toUpperCase()} (the model's manifest), the same ids on both sides`);
  notes.push(`prefill in chunks of ${prefillChunk()} tokens${process.env.VFFN_PREFILL_CHUNK ? ' (set by VFFN_PREFILL_CHUNK, not the default)' : ''}`);
  notes.push(`prompt cap fixed at ${DEFAULT_MAX_PROMPT_TOKENS} tokens (VFFN_MAX_PROMPT_TOKENS), whatever budget the engine would choose`);
  notes.push('decode per token = the request\'s decode time / tokens fed after the first was picked (stop token excluded)');
  notes.push('decode per token, one model run per token: the same cold prompts run again with drafting off (VFFN_DRAFT_TOKENS=0)');
  notes.push(reusePicks()
    ? 'warm requests may hand out the previous request\'s picks with no model run (engine/replay.ts; exact): "generated tokens handed out" counts them'
    : 'picks replay off (VFFN_REUSE_PICKS=0): every warm token was picked by a model run');

  let ortVersion = 'unknown';
  try {
    ortVersion = JSON.parse(readFileSync(path.join(root, 'node_modules', 'onnxruntime-node', 'package.json'), 'utf8')).version;
  } catch {
    // reported as unknown
  }
  const result: SideResult = {
    engine: 'ours',
    label: `VersatileFFN backend (Engine.complete; onnxruntime-node ${ortVersion}, ${m.session.activeProvider}, ${threads} intra-op threads), `
      + `${m.name} (${m.manifest.architecture.kind}, ${path.relative(root, modelDir) || modelDir})`,
    versions: { 'onnxruntime-node': ortVersion, model: m.name },
    threads,
    loadAverageAtStart,
    loadMs,
    rssAfterLoadBytes,
    peakRssBytes: 0,
    prefill,
    plainDecode,
    completions,
    notes,
  };
  const plan: Plan = { order: m.manifest.fim.order, warmup, prefill: planPrefill, completions: planCompletions };
  writeFileSync(planFile, JSON.stringify(plan));
  await engine.dispose();
  result.peakRssBytes = peakRssBytes();
  writeFileSync(outFile, `${JSON.stringify(result, null, 2)}\n`);
}

main().catch((e) => {
  process.stderr.write(`bench:peer (ours): ${(e as Error).stack ?? e}\n`);
  process.exit(1);
});
