// One completion or analysis on a loaded model: guards, prompt, prefill, decode with stop rules,
// post-processing, telemetry.
import type {
  AnalyzeParams, AnalyzeResult, CompleteParams, CompletePartial, CompleteResult, StopReason, TokenInfo, TokenRouting,
} from '../../../common/protocol';
import { emptyCompleteResult, emptyTimings } from '../../../common/vocabulary';
import { draftHistory, draftSource, draftTokens, historyDraftTokens } from './drafts';
import { banTokens, Generator, GeneratedToken, seededRng } from './generator';
import type { LoadedModel } from './loadedModel';
import { postprocess } from './postprocess';
import { buildPrompt, defaultBudget } from './prompt';
import { observePrefill } from './promptBudget';
import { pickRecords, reusePicks, usablePicks } from './replay';
import type { JobControl } from './scheduler';
import { type StopDecision, StopRules } from './stops';
import { healingProcessor, promptToRun } from './tokenHealing';
import { computeCost, computeShape, ms, probAndEntropy, summarizeCompute } from './telemetry';

export const MAX_DOCUMENT_CHARS = 10 * 1024 * 1024;
export const MAX_LINE_CHARS = 100_000;
export const MAX_TOKENS_LIMIT = 512;
export const DEFAULT_MAX_TIME_MS = 2_000;

/** Thrown for input the engine refuses; the message says what was wrong. */
export class InputError extends Error {}

export interface CleanInput {
  prefix: string;
  suffix: string;
}

/** Refuses what cannot be completed sensibly; repairs lone surrogates. Returns null for empty input. */
export function guardInput(prefix: unknown, suffix: unknown): CleanInput | null {
  if (typeof prefix !== 'string' || typeof suffix !== 'string') throw new InputError('prefix and suffix must be strings');
  const size = prefix.length + suffix.length;
  if (size > MAX_DOCUMENT_CHARS) {
    throw new InputError(`document too large (${(size / 1048576).toFixed(1)} M characters; the limit is 10 M): completions are off for this file`);
  }
  if (prefix.includes('\0') || suffix.includes('\0')) throw new InputError('binary content (NUL bytes): completions are off for this file');
  const lineStart = prefix.lastIndexOf('\n') + 1;
  const nl = suffix.indexOf('\n');
  const lineLength = prefix.length - lineStart + (nl < 0 ? suffix.length : nl);
  if (lineLength > MAX_LINE_CHARS) throw new InputError(`the cursor's line is ${lineLength} characters long (limit ${MAX_LINE_CHARS}): no completion`);
  if (prefix.trim() === '' && suffix.trim() === '') return null;
  return { prefix: wellFormed(prefix), suffix: wellFormed(suffix) };
}

/** Replaces lone surrogates with U+FFFD so the tokenizer and JSON see valid text. */
export function wellFormed(s: string): string {
  const native = (s as unknown as { toWellFormed?: () => string }).toWellFormed;
  if (native) return native.call(s);
  return s.replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, '\uFFFD');
}

/** The prompt a completion with `params` runs: what runComplete and runPrefill share, so a prefill reads what the completion will. */
export interface PreparedPrompt {
  input: CleanInput;
  maxTokens: number;
  /** The prompt's tokens as run (with token healing: without the prefix's last token). */
  ids: number[];
  /** Token healing's text taken off the prefix (SPM), or null. */
  heal: string | null;
}

/** Throws InputError for input the engine refuses; null for empty input (nothing to complete). */
export function preparePrompt(m: LoadedModel, params: CompleteParams): PreparedPrompt | null {
  if (!params || typeof params !== 'object') throw new InputError('complete needs CompleteParams (an object with prefix and suffix)');
  const input = guardInput(params.prefix, params.suffix);
  if (!input) return null;
  const gen = m.manifest.generation ?? {};
  const maxTokens = clampInt(params.maxTokens ?? gen.max_new_tokens ?? 64, 1, MAX_TOKENS_LIMIT);
  const prompt = buildPrompt(m.tokenizer, m.tokenizer.special, { ...input, prefixOffset: params.prefixOffset, contextChunks: params.contextChunks },
    defaultBudget(m.manifest.architecture.context_length, maxTokens, m.promptTokens, m.manifest.fim.order), m.manifest.fim.order);
  // SPM: the prefix's last token is picked again by the model (token healing, tokenHealing.ts).
  const { ids, heal } = promptToRun(m.vocabIndex ? m.tokenizer : null, prompt, input.prefix);
  return { input, maxTokens, ids, heal };
}

/** Where a multi-line completion's first line goes as soon as it is generated (CompletePartial). */
export type PartialSink = (partial: CompletePartial) => void;

/**
 * The end of a multi-line completion's first non-blank line in `text` (the index of its newline), or
 * -1 while that line is not finished. A completion that opens with a line break (the cursor after
 * `{`) shows nothing useful until the next line is there.
 */
export function firstLineEnd(text: string): number {
  const start = text.search(/\S/);
  return start < 0 ? -1 : text.indexOf('\n', start);
}

/**
 * `onPartial`: called at most once, with the completion's first line, when it is multi-line and that
 * line ends before generation does: an editor can show it ~first-line time instead of waiting for the
 * whole completion (which the time limit often ends).
 */
export async function runComplete(m: LoadedModel, params: CompleteParams, ctl: JobControl, onPartial?: PartialSink): Promise<CompleteResult> {
  const shape = computeShape(m.manifest.architecture);
  const provider = m.session.activeProvider;
  const t0 = ctl.startedAt;
  const prepared = preparePrompt(m, params);
  if (!prepared) return emptyCompleteResult(params, m.name, provider, 'empty_input', undefined, shape.maxLoops);
  const { input, maxTokens, ids: promptIds, heal } = prepared;
  const gen = m.manifest.generation ?? {};
  const maxTimeMs = params.maxTimeMs && params.maxTimeMs > 0 ? params.maxTimeMs : DEFAULT_MAX_TIME_MS;
  // The request's sampling settings win; the manifest's generation defaults fill in what it leaves out.
  const temperature = params.temperature ?? gen.temperature ?? 0;
  const topP = params.topP ?? gen.top_p ?? 1;
  // With token healing the stop rules and post-processing see the document with the healed token's
  // text moved from the prefix into the completion; it is taken off the completion at the end.
  const prefix = heal ? input.prefix.slice(0, input.prefix.length - heal.length) : input.prefix;
  const tokenLimit = maxTokens + (heal ? 1 : 0);   // the first token spells the healed text again
  const t1 = performance.now();

  const stopIds = gen.stop_ids ?? [m.tokenizer.special.eot, m.tokenizer.special.file_sep];
  const cache = m.kv.pick(promptIds);
  const generator = new Generator(m.session, cache, {
    temperature, topP, stopIds,
    rng: temperature > 0 ? seededRng(params.seed ?? 0) : undefined,
    // FIM markers, padding and the tokenizer's other special tokens (<|im_start|>, …) are never text to insert.
    processors: [banTokens(bannedIds(m, stopIds)), ...(heal && m.vocabIndex ? [healingProcessor(m.vocabIndex, m.tokenizer, heal)] : [])],
  });
  // Drafts (greedy only, drafts.ts): the rest of the previous completion, else prompt lookup.
  const maxDraft = Math.max(draftTokens(), historyDraftTokens());
  const draft = draftSource(m.tokenizer, promptIds, heal, draftHistory(cache, promptIds));
  const draftRoom = (used: number) => Math.max(0, Math.min(maxDraft, tokenLimit - used - 1));
  // What the previous request picked after this prompt (replay.ts): the same picks come back without runs.
  const greedy = temperature <= 0 && !params.includePromptTokens;
  const known = greedy && reusePicks() ? usablePicks(m.tokenizer, cache.picksAfter(promptIds), heal) : [];
  const prefill = await generator.appendTokens(promptIds, {
    fromScratch: params.includePromptTokens, allLogits: params.includePromptTokens, shouldStop: () => ctl.stopReason() !== null,
    draft: draft([]).slice(0, draftRoom(0)), known,
  });
  const t2 = performance.now();
  if (!prefill.cancelled) observePrefill(m, prefill.processed + prefill.drafted, t2 - t1);
  const ended = () => {
    const why = ctl.stopReason();
    if (!why) return null;
    const r = emptyCompleteResult(params, m.name, provider, why, undefined, shape.maxLoops);
    r.timings = { ...r.timings, queueMs: ms(ctl.startedAt - ctl.arrivedAt), totalMs: ms(performance.now() - ctl.arrivedAt) };
    return r;
  };
  if (prefill.cancelled) return ended()!;

  // The time limit bounds generation, not reading the prompt: a cold prompt on a 0.5B model takes
  // seconds on a CPU and is what makes the next keystrokes fast (KV cache), so a limit that counted it
  // would return nothing for the first completion in every file.
  const rules = new StopRules({
    prefix, suffix: input.suffix, maxTokens: tokenLimit, maxTimeMs, startedAt: performance.now(), confidenceCutoff: params.confidenceCutoff ?? 0,
  });
  /** Generated text as it is inserted: cleaned by the post-processing rules, the healed token's text taken off. */
  const finish = (raw: string) => {
    // A stop mid-character leaves an incomplete UTF-8 sequence, which decodes to U+FFFD: not text to insert.
    const post = postprocess(raw.replace(/\uFFFD+$/, ''), { prefix, suffix: input.suffix });
    if (heal) post.text = post.text.startsWith(heal) ? post.text.slice(heal.length) : '';
    return post;
  };
  let partialSent = !onPartial || rules.singleLine;
  let firstLineMs = 0;
  const tokens: GeneratedToken[] = [];
  const ids: number[] = [];
  let text = '';
  let stop: StopReason = 'max_tokens';
  let keepChars = 0;
  let trim: StopDecision['trim'];
  let stopped = false;
  while (!stopped) {
    const early = ended();
    if (early) return early;
    const batch = await generator.nextTokens(draft, draftRoom(tokens.length));
    for (const tok of batch) {
      tokens.push(tok);
      const prevLength = text.length;
      if (!tok.isStop) {
        ids.push(tok.id);
        text = m.tokenizer.decode(ids);
      }
      const d = rules.check({ text, prevLength, prob: tok.prob, isStop: tok.isStop, count: tokens.length, now: performance.now() });
      if (d) {
        stop = d.reason;
        keepChars = d.keepChars;
        trim = d.trim;
        generator.finish();
        stopped = true;
        break;
      }
      const lineEnd = partialSent ? -1 : firstLineEnd(text);
      if (lineEnd >= 0) {
        partialSent = true;
        const first = finish(text.slice(0, lineEnd)).text;
        if (first.trim() !== '') {
          firstLineMs = ms(performance.now() - ctl.arrivedAt);
          onPartial!({ requestId: params.requestId, model: m.name, completion: first, elapsedMs: firstLineMs });
        }
      }
    }
  }
  const t3 = performance.now();
  const early = ended();
  if (early) return early;
  if (greedy) cache.recordPicks(promptIds.length, pickRecords(m.tokenizer, tokens, heal));

  const post = finish(text.slice(0, keepChars));
  if (trim && keepChars < text.length) post.trimmed.unshift({ rule: trim, removedText: text.slice(keepChars) });
  const t4 = performance.now();

  const generated = tokens.filter((t) => !t.isStop);
  const infos = generated.map((t) => tokenInfo(m, t.id, t.prob, t.entropy, t.routing));
  const result: CompleteResult = {
    requestId: params.requestId,
    completion: post.text,
    tokens: infos,
    stopReason: stop,
    trimmed: post.trimmed,
    timings: {
      queueMs: ms(ctl.startedAt - ctl.arrivedAt),
      tokenizeMs: ms(t1 - t0),
      prefillMs: ms(t2 - t1),
      firstTokenMs: ms((tokens[0]?.pickedAt ?? t3) - ctl.arrivedAt),
      firstLineMs,
      decodeMs: ms(t3 - (tokens[0]?.pickedAt ?? t3)),
      postprocessMs: ms(t4 - t3),
      totalMs: ms(performance.now() - ctl.arrivedAt),
      promptTokens: promptIds.length,
      reusedTokens: prefill.reused,
      generatedTokens: generated.length,
      replayedTokens: generated.filter((t) => t.replayed).length,
    },
    compute: summarizeCompute(shape, generated.map((t) => t.routing)),
    model: m.name,
    provider,
  };
  if (params.includePromptTokens && prefill.allLogits) {
    result.promptTokens = scorePrompt(m, promptIds, prefill.routing, prefill.allLogits);
  }
  return result;
}

/** Per-token data for `ids`, scored from scratch (the cache is rewound to the start). */
export async function runAnalyze(m: LoadedModel, params: AnalyzeParams, ctl: JobControl): Promise<AnalyzeResult> {
  const t0 = performance.now();
  const input = guardInput(typeof params?.text === 'string' ? params.text : '', '');
  const base: AnalyzeResult = {
    tokens: [], compute: summarizeCompute(computeShape(m.manifest.architecture), []), model: m.name, timings: emptyTimings(),
  };
  if (!input) return { ...base, error: 'empty text' };
  const budget = m.manifest.architecture.context_length - 1;
  // Only the start is scored; encoding a huge selection whole would take seconds for nothing.
  let ids = m.tokenizer.encode(wellFormed(input.prefix.slice(0, budget * 8)));
  if (ids.length > budget) ids = ids.slice(0, budget);
  const t1 = performance.now();
  const generator = new Generator(m.session, m.kv.spare(), { temperature: 0, topP: 1, stopIds: [] });
  const prefill = await generator.appendTokens(ids, { fromScratch: true, allLogits: true, shouldStop: () => ctl.stopReason() !== null });
  if (prefill.cancelled || !prefill.allLogits) return { ...base, error: 'cancelled' };
  const t2 = performance.now();
  const tokens = scorePrompt(m, ids, prefill.routing, prefill.allLogits);
  return {
    tokens,
    compute: summarizeCompute(computeShape(m.manifest.architecture), tokens.map((t) => t.routing)),
    model: m.name,
    timings: {
      ...emptyTimings(), queueMs: ms(ctl.startedAt - ctl.arrivedAt), tokenizeMs: ms(t1 - t0), prefillMs: ms(t2 - t1),
      totalMs: ms(performance.now() - ctl.arrivedAt), promptTokens: ids.length,
    },
  };
}

/** Prompt token i: its own routing, and the probability the model gave it after tokens 0..i-1 (1 for the first). */
function scorePrompt(m: LoadedModel, ids: readonly number[], routing: TokenRouting[], logits: Float32Array[]): TokenInfo[] {
  return ids.map((id, i) => {
    const pe = i === 0 ? { prob: 1, entropy: 0 } : probAndEntropy(logits[i - 1], id);
    return tokenInfo(m, id, pe.prob, pe.entropy, routing[i]);
  });
}

function tokenInfo(m: LoadedModel, id: number, prob: number, entropy: number, routing: TokenRouting): TokenInfo {
  const c = computeCost(computeShape(m.manifest.architecture), routing.loops, routing.ffnShare);
  return { id, text: m.tokenizer.tokenText(id), prob, entropy, routing, computeVsDense: c.vsDense, computeVsMax: c.vsMax };
}

/** Special tokens that are not stop tokens: the FIM markers, padding and the tokenizer's special added tokens. */
export function bannedIds(m: Pick<LoadedModel, 'tokenizer'>, stopIds: readonly number[]): number[] {
  const sp = m.tokenizer.special;
  const ids = new Set([sp.pad, sp.fim_prefix, sp.fim_suffix, sp.fim_middle, ...m.tokenizer.controlIds]);
  return [...ids].filter((id) => Number.isInteger(id) && !stopIds.includes(id)).sort((a, b) => a - b);
}

function clampInt(x: number, lo: number, hi: number): number {
  return Math.max(lo, Math.min(hi, Math.floor(Number.isFinite(x) ? x : lo)));
}
