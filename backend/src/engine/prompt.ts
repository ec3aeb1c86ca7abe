// FIM prompt assembly within a token budget, in the order the model was trained on (manifest fim.order):
//
// PSM: [<|file_sep|>uri\nchunk]* <|fim_prefix|> prefix <|fim_suffix|> suffix <|fim_middle|>
// SPM: [<|file_sep|>uri\nchunk]* <|fim_prefix|> <|fim_suffix|> suffix <|fim_middle|> prefix
//      (models/toolchain/data.py trains both: the middle then follows the prefix directly)
// Context chunks come first and the prefix's start is cut at a stable place, so that as the user types
// the token sequence up to the cursor stays the same and the KV cache serves it: only the last few
// prefix tokens, the suffix and <|fim_middle|> run again (SPM: only the prefix's last tokens).
import type { ContextChunk } from '../../../common/protocol';
import type { FimOrder, SpecialIds } from './modelFolder';

export interface TextEncoder {
  encode(text: string): number[];
}

export interface PromptInput {
  prefix: string;
  /** Where the prefix starts in the document (CompleteParams.prefixOffset): the cut grid counts from there. */
  prefixOffset?: number;
  suffix: string;
  contextChunks?: readonly ContextChunk[];
}

export interface PromptBudget {
  /** Tokens the whole prompt may use (context length minus the tokens to generate). */
  total: number;
  /**
   * Most tokens the suffix may use. PSM puts it after the prefix, so every keystroke re-runs it: it
   * stays small (an eighth, at most 64). SPM puts it first, where typing on the cursor's line does not
   * change it: a quarter (at most 256), as evaluate.py's prompts give it (the engine-level FIM
   * evaluation, docs/UPCYCLING.md).
   */
  suffixMax: number;
  /** Most tokens the context chunks may use together. */
  contextMax: number;
}

export interface Prompt {
  ids: number[];
  prefixTokens: number;
  suffixTokens: number;
  contextTokens: number;
  /** The prefix/suffix text that made it into the prompt. */
  prefixText: string;
  suffixText: string;
  truncated: boolean;
}

/** The prefix's start moves in steps of this many characters, so it does not move on every keystroke. */
export const PREFIX_CUT_STEP = 1024;

/**
 * Most prompt tokens by default, whatever the model's context length: a cold prefill costs about
 * 4-8 ms per token for Qwen2.5-Coder-0.5B (int8) on two CPU cores, so a 32k-context model given
 * everything the extension sends (256 lines, recent chunks) would spend 15-25 s before its first
 * token. VFFN_MAX_PROMPT_TOKENS overrides.
 */
export const DEFAULT_MAX_PROMPT_TOKENS = 1024;

export function maxPromptTokens(): number {
  const v = Number(process.env.VFFN_MAX_PROMPT_TOKENS);
  return Number.isInteger(v) && v >= 16 ? v : DEFAULT_MAX_PROMPT_TOKENS;
}

export function defaultBudget(contextLength: number, maxTokens: number, maxPrompt = maxPromptTokens(), order: FimOrder = 'psm'): PromptBudget {
  const total = Math.max(8, Math.min(maxPrompt, contextLength - maxTokens - 1));
  const suffixMax = order === 'spm' ? Math.min(256, Math.floor(total / 4)) : Math.min(64, Math.floor(total / 8));
  return { total, suffixMax, contextMax: Math.floor(total / 4) };
}

export function buildPrompt(tok: TextEncoder, special: SpecialIds, input: PromptInput, budget: PromptBudget, order: FimOrder = 'psm'): Prompt {
  const fixed = 3; // fim_prefix, fim_suffix, fim_middle
  const suffixMax = Math.max(0, Math.min(budget.suffixMax, budget.total - fixed));
  const suffix = fitSuffix(tok, input.suffix, suffixMax);
  const context: number[] = [];
  for (const chunk of input.contextChunks ?? []) {
    const room = Math.min(budget.contextMax, budget.total - fixed - suffixMax) - context.length;
    if (room < 8) break;
    const ids = [special.file_sep, ...tok.encode(`${chunk.uri}\n${chunk.text.endsWith('\n') ? chunk.text : chunk.text + '\n'}`)];
    context.push(...(ids.length <= room ? ids : ids.slice(0, room)));
  }
  // PSM: the prefix budget leaves room for the largest suffix, not this one: the suffix follows the prefix,
  // and a budget that moved with it would move the prefix's start and defeat the KV cache. SPM: the suffix
  // comes first, so a change to it re-runs everything after it anyway, and the prefix takes the room a
  // short suffix leaves (typing at the end of a file: nearly the whole budget).
  const suffixRoom = order === 'spm' ? suffix.ids.length : suffixMax;
  const prefixBudget = Math.max(0, budget.total - fixed - suffixRoom - context.length);
  const prefix = fitPrefix(tok, input.prefix, prefixBudget, input.prefixOffset ?? 0);
  const ids = order === 'spm'
    ? [...context, special.fim_prefix, special.fim_suffix, ...suffix.ids, special.fim_middle, ...prefix.ids]
    : [...context, special.fim_prefix, ...prefix.ids, special.fim_suffix, ...suffix.ids, special.fim_middle];
  return {
    ids,
    prefixTokens: prefix.ids.length,
    suffixTokens: suffix.ids.length,
    contextTokens: context.length,
    prefixText: prefix.text,
    suffixText: suffix.text,
    truncated: prefix.truncated || suffix.truncated || context.length < (input.contextChunks?.length ? 1 : 0),
  };
}

interface Fitted {
  ids: number[];
  text: string;
  truncated: boolean;
}

/**
 * Keeps the end of the prefix (nearest the cursor). The start is the first line start after a multiple
 * of a fixed step, counted in document characters (`offset`: where the prefix starts in the document):
 * the earliest such start whose text fits. Typing at the end only changes that choice when the text
 * outgrows the budget, and a prefix window that slides with the cursor does not change it, so the KV
 * cache keeps serving the prompt's start.
 */
export function fitPrefix(tok: TextEncoder, prefix: string, budget: number, offset = 0): Fitted {
  if (budget <= 0) return { ids: [], text: '', truncated: prefix.length > 0 };
  const step = Math.max(64, Math.min(PREFIX_CUT_STEP, budget));
  // Grid point k sits at k·step - base in the prefix (k·step in the document); k = 0 keeps everything.
  const base = Number.isSafeInteger(offset) && offset > 0 ? offset % step : 0;
  const gridAt = (pos: number) => Math.ceil((pos + base) / step);   // the first grid point at or after pos
  const maxK = Math.max(0, gridAt(prefix.length) - 1);
  const memo = new Map<number, number[]>();
  const startOf = (k: number) => stablePrefixCut(prefix, k * step - base, step, base);
  const idsAt = (k: number) => {
    const start = startOf(k);
    let ids = memo.get(start);
    if (!ids) memo.set(start, (ids = tok.encode(prefix.slice(start))));
    return ids;
  };
  // Text longer than 4 characters per token is never needed; start the search there.
  const kMin = Math.min(maxK, Math.max(0, gridAt(prefix.length - budget * 4)));
  let k = kMin;
  let fit = -1;
  for (let attempt = 0; attempt < 12; attempt++) {
    const ids = idsAt(k);
    if (ids.length <= budget) {
      fit = k;
      break;
    }
    if (k >= maxK) break;
    const textLength = prefix.length - startOf(k);
    const drop = Math.ceil(((ids.length - budget) * textLength) / ids.length);
    k = Math.min(maxK, Math.max(k + 1, gridAt(startOf(k) + drop)));
  }
  if (fit < 0) {
    // Even the shortest candidate is too long (characters that take several tokens each): keep the last tokens.
    const ids = idsAt(k);
    return { ids: ids.slice(ids.length - budget), text: prefix.slice(startOf(k)), truncated: true };
  }
  while (fit > kMin && idsAt(fit - 1).length <= budget) fit--;
  const startChar = startOf(fit);
  return { ids: idsAt(fit), text: prefix.slice(startChar), truncated: startChar > 0 };
}

/**
 * The first line start at or after `minStart` rounded up to the grid of `step` (0 when everything fits).
 * The grid's points are where `base + position` is a multiple of `step` (`base`: the text's offset in
 * the document, modulo the step).
 */
export function stablePrefixCut(text: string, minStart: number, step = PREFIX_CUT_STEP, base = 0): number {
  if (minStart <= 0) return 0;
  const q = Math.ceil((minStart + base) / step) * step - base;
  if (q >= text.length) return Math.min(minStart, text.length);
  const nl = text.indexOf('\n', q - 1);
  // No line break close by (a very long line): cut mid-line at the rounded position.
  return nl < 0 || nl + 1 >= text.length || nl - q > 4 * step ? q : nl + 1;
}

/** Keeps the start of the suffix (nearest the cursor), ending at a line end when it has to cut. */
export function fitSuffix(tok: TextEncoder, suffix: string, budget: number): Fitted {
  if (budget <= 0 || suffix === '') return { ids: [], text: '', truncated: suffix.length > 0 };
  let charBudget = budget * 4;
  let text = suffix;
  let ids: number[] = [];
  for (let attempt = 0; attempt < 6; attempt++) {
    text = suffix.length <= charBudget ? suffix : cutAtLineEnd(suffix, charBudget);
    ids = tok.encode(text);
    if (ids.length <= budget) return { ids, text, truncated: text.length < suffix.length };
    charBudget = Math.floor((text.length * budget) / ids.length * 0.9);
  }
  return { ids: ids.slice(0, budget), text, truncated: true };
}

function cutAtLineEnd(text: string, maxChars: number): string {
  const nl = text.lastIndexOf('\n', maxChars - 1);
  return nl > 0 ? text.slice(0, nl + 1) : text.slice(0, maxChars);
}
