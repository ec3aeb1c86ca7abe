// Prompts for `npm run bench:peer`: real source text cut at exact token counts, built with the
// engine's own prompt code (buildPrompt) so that the ids handed to llama.cpp are the ids our engine
// runs. Pure given a tokenizer: no model, no timing.
import * as path from 'node:path';
import { CompletionCache } from '../../../extension/src/completion/cache';
import type { FimOrder, SpecialIds } from '../engine/modelFolder';
import { buildPrompt, defaultBudget, type PromptBudget } from '../engine/prompt';
import { HealingTokenizer, promptToRun } from '../engine/tokenHealing';
import { type Sample, typed } from './samples';

export interface Tok {
  encode(text: string): number[];
  decode(ids: readonly number[]): string;
}

/** SPM prompts are token-healed by the engine (tokenHealing.ts): building them needs each token's text. */
export type PromptTok = Tok & Partial<HealingTokenizer>;

/** The ids the engine runs for a prompt it built: an SPM prompt without its healed last token. */
function idsToRun(tok: PromptTok, p: { ids: number[]; prefixTokens: number }, prefix: string, order: FimOrder): number[] {
  if (order !== 'spm') return p.ids;
  if (!tok.tokenText || !tok.controlIds || tok.vocabSize === undefined) throw new Error('SPM prompts need the tokenizer\'s token texts (token healing)');
  return promptToRun(tok as HealingTokenizer, p, prefix).ids;
}

/** Token-boundary shifts tried when re-encoding a cut piece gives one token more or less. */
const SHIFTS = [0, 1, -1, 2, -2, 3, -3];

/**
 * The end of `text` that encodes to exactly `n` tokens, cut at a token boundary of `text`'s own
 * encoding (a few boundaries either side are tried when the cut piece re-encodes differently); null
 * when `text` is too short or no cut gives exactly `n`.
 */
export function lastTokens(tok: Tok, text: string, n: number): string | null {
  return cutTokens(tok, text, n, 'end');
}

/** The start of `text` that encodes to exactly `n` tokens (see lastTokens). */
export function firstTokens(tok: Tok, text: string, n: number): string | null {
  return cutTokens(tok, text, n, 'start');
}

function cutTokens(tok: Tok, text: string, n: number, keep: 'start' | 'end'): string | null {
  if (n <= 0) return n === 0 ? '' : null;
  const ids = tok.encode(text);
  if (ids.length < n) return null;
  for (const d of SHIFTS) {
    const k = n + d;
    if (k <= 0 || k > ids.length) continue;
    const piece = tok.decode(keep === 'end' ? ids.slice(ids.length - k) : ids.slice(0, k));
    // A cut inside a multi-byte character decodes to U+FFFD: not a piece of the text.
    if (!(keep === 'end' ? text.endsWith(piece) : text.startsWith(piece))) continue;
    if (tok.encode(piece).length === n) return piece;
  }
  return null;
}

export interface Anchor {
  /** Character offset of the cursor: the end of a line that opens a block. */
  cursor: number;
  /** Character offset where the suffix starts: the line break before the block's closing line. */
  holeEnd: number;
  line: number;               // 0-based line of the cursor
}

const OPENS_BLOCK = /[{:]\s*$/;
const MIN_BODY_LINES = 4;

/**
 * Cursor positions for a multi-line completion with a hole: at the end of a line that opens a block
 * (`{` or `:`), the block's body removed (the model writes it), the suffix starting at the line
 * break before the closing line. Multi-line on purpose: a cursor mid-line ends at the first line
 * break (the single-line stop rule), too soon to time decoding.
 */
export function blockAnchors(text: string): Anchor[] {
  const lines = text.split('\n');
  const starts: number[] = [];
  let at = 0;
  for (const l of lines) {
    starts.push(at);
    at += l.length + 1;
  }
  const indent = (l: string) => l.length - l.trimStart().length;
  const out: Anchor[] = [];
  for (let i = 0; i < lines.length - 1; i++) {
    if (!OPENS_BLOCK.test(lines[i]) || lines[i].trim().startsWith('//') || lines[i].trim().startsWith('#')) continue;
    const base = indent(lines[i]);
    let j = i + 1;
    let body = 0;
    while (j < lines.length && (lines[j].trim() === '' || indent(lines[j]) > base)) {
      if (lines[j].trim() !== '') body++;
      j++;
    }
    if (body < MIN_BODY_LINES || j >= lines.length) continue;
    out.push({ cursor: starts[i] + lines[i].length, holeEnd: starts[j] - 1, line: i });
  }
  return out;
}

export interface ExactPrompt {
  promptTokens: number;
  prefix: string;
  suffix: string;
  /** The ids the engine builds for prefix/suffix (buildPrompt with the engine's default budget). */
  ids: number[];
  file: string;
  line: number;
}

export interface ExactPromptOptions {
  contextLength: number;
  maxTokens: number;          // the request's maxTokens: it sets the prompt budget
  suffixTokens: number;       // tokens of the suffix in every prompt
  order?: FimOrder;           // the model's prompt order (manifest fim.order); PSM when absent
}

/**
 * Up to `count` sets of FIM prompts, each from another file (its first block anchor where the engine's
 * buildPrompt keeps every token given, no cut of its own). A set holds one prompt of exactly each of
 * `sizes` tokens, all at the same cursor (they differ only in how much text before it they keep).
 * Several sets make a row measured over several runs more than one text's luck: how often a draft
 * guesses right, or where a completion stops, follows the text. Throws when no file gives a set.
 */
export function exactPromptSets(tok: PromptTok, special: SpecialIds, files: readonly { path: string; text: string }[],
  sizes: readonly number[], opts: ExactPromptOptions, count: number): ExactPrompt[][] {
  const budget = defaultBudget(opts.contextLength, opts.maxTokens, undefined, opts.order);
  const sets: ExactPrompt[][] = [];
  for (const f of files) {
    if (sets.length >= count) break;
    const set = firstFittingAnchor(tok, special, f, sizes, opts, budget);
    if (set) sets.push(set);
  }
  if (sets.length === 0) {
    throw new Error(`no block in ${files.map((f) => f.path).join(', ')} gives FIM prompts of exactly ${sizes.join(' and ')} tokens `
      + `within the budget of a ${opts.contextLength}-token context with ${opts.maxTokens} tokens to generate`);
  }
  return sets;
}

function firstFittingAnchor(tok: PromptTok, special: SpecialIds, f: { path: string; text: string }, sizes: readonly number[],
  opts: ExactPromptOptions, budget: PromptBudget): ExactPrompt[] | null {
  for (const a of blockAnchors(f.text)) {
    const suffix = firstTokens(tok, f.text.slice(a.holeEnd), opts.suffixTokens);
    if (suffix === null) continue;
    const out: ExactPrompt[] = [];
    for (const n of sizes) {
      let fits: ExactPrompt | null = null;
      // One token more of text only when the engine heals the prompt's last one away.
      for (let extra = 0; extra <= 1 && !fits; extra++) {
        const prefix = lastTokens(tok, f.text.slice(0, a.cursor), n - 3 - opts.suffixTokens + extra);
        if (prefix === null) break;
        const p = buildPrompt(tok, special, { prefix, suffix }, budget, opts.order);
        const ids = idsToRun(tok, p, prefix, opts.order ?? 'psm');
        if (ids.length === n && !p.truncated) fits = { promptTokens: n, prefix, suffix, ids, file: f.path, line: a.line + 1 };
      }
      if (!fits) break;
      out.push(fits);
    }
    if (out.length === sizes.length) return out;
  }
  return null;
}

/**
 * The files in turns by folder (the first of each folder, then the second of each, …), keeping each
 * folder's order: several prompt sets then come from several folders, and languages, not one folder's
 * first files.
 */
export function byFolderInTurn<T extends { path: string }>(files: readonly T[]): T[] {
  const folders = new Map<string, T[]>();
  for (const f of files) {
    const d = path.dirname(f.path);
    if (!folders.has(d)) folders.set(d, []);
    folders.get(d)!.push(f);
  }
  const out: T[] = [];
  for (let i = 0; out.length < files.length; i++) {
    for (const list of folders.values()) if (i < list.length) out.push(list[i]);
  }
  return out;
}

/** The ids the engine builds for one completion request (as runComplete does, no context chunks), and the text they hold. */
export function engineIds(tok: PromptTok, special: SpecialIds, prefix: string, suffix: string, contextLength: number, maxTokens: number,
  order: FimOrder = 'psm'): { ids: number[]; prefixText: string; suffixText: string } {
  const p = buildPrompt(tok, special, { prefix, suffix }, defaultBudget(contextLength, maxTokens, undefined, order), order);
  return { ids: idsToRun(tok, p, prefix, order), prefixText: p.prefixText, suffixText: p.suffixText };
}

/** Prompt sizes of the cold prefill measurement (issue 10). */
export const PREFILL_SIZES = [250, 1000];
/** Cold runs per prompt size, each from another file where enough fit (bench:peer's --prefill-runs). */
export const PREFILL_RUNS = 5;
/** Tokens of the suffix in the exact-size prompts (the engine lets a suffix use up to 64). */
export const SUFFIX_TOKENS = 60;

/** One request for the llama.cpp child to replay: the same ids, and as many tokens picked as ours picked. */
export interface PlanRequest {
  ids: number[];
  /** The prompt's prefix and suffix text, which the llama.cpp child tokenizes itself (timed, and checked against `ids`). */
  prefixText: string;
  suffixText: string;
  picks: number;
}

export interface PromptSource {
  file: string;
  line: number;
}

/** What our child hands the llama.cpp child (bench/peer/llama.mjs reads it). */
export interface Plan {
  /** The prompts' FIM order, for the llama.cpp child's own tokenization check. */
  order: FimOrder;
  warmup: PlanRequest;
  /** `sources[i]`: where run i's prompt was cut (runs cycle through several files' prompts). */
  prefill: { promptTokens: number; sources: PromptSource[]; runs: PlanRequest[] }[];
  /**
   * `editor`: the first keystroke (typing on through the line after `warm`'s) that the extension's
   * completion cache could not answer, when it is not `warm` itself (peerOurs.ts); run after `warm`.
   */
  completions: { file: string; cold: PlanRequest; warm: PlanRequest; editor?: PlanRequest }[];
}

/** Keystrokes typed on through a sample's line when looking for one the editor's cache cannot answer. */
const EDITOR_KEYSTROKES = 12;

/**
 * The first of the next EDITOR_KEYSTROKES characters of the line whose keystroke the extension's
 * completion cache (extension/src/completion/cache.ts) could not answer, holding only the cold
 * completion: it answers every keystroke that types through it. null when it answers them all.
 */
export function firstUnanswered(s: Sample, coldCompletion: string): number | null {
  const cache = new CompletionCache(4);
  cache.set('', s.prefix, s.suffix, { completion: coldCompletion, requestId: 'cold', model: '' });
  for (let k = 1; k <= Math.min(EDITOR_KEYSTROKES, s.unwritten.length); k++) {
    const t = typed(s, k);
    if (!cache.get('', t.prefix, t.suffix)) return k;
  }
  return null;
}
