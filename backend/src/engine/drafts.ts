// Where speculative drafts come from (Generator.nextTokens checks them: greedy only, output unchanged).
// Code repeats itself, and a keystroke mostly continues what was just suggested, so two sources:
// the rest of the previous completion (what the KV cache held before this request), else prompt lookup.
import type { KvCache } from './kvCache';
import { draftSpellsHeal } from './tokenHealing';

/**
 * Most tokens guessed by prompt lookup and checked in one model run (greedy only; 0 turns it off).
 * VFFN_DRAFT_TOKENS overrides, so the benchmark can compare with and without.
 */
export function draftTokens(): number {
  const v = Number(process.env.VFFN_DRAFT_TOKENS);
  return Number.isInteger(v) && v >= 0 && v <= 16 ? v : DEFAULT_DRAFT_TOKENS;
}
export const DEFAULT_DRAFT_TOKENS = 4;

/**
 * Most tokens drafted from the previous completion (historyLookup below) and checked in one run.
 * A run of 16 tokens costs ~3× one of a single token on the 0.5B model (134 vs 43 ms after 800 cached
 * tokens, 2-core Intel VM), and this draft is usually right when it matches at all.
 * VFFN_HISTORY_DRAFT_TOKENS overrides (0 turns it off; VFFN_DRAFT_TOKENS=0 turns off all drafting).
 */
export function historyDraftTokens(): number {
  const v = Number(process.env.VFFN_HISTORY_DRAFT_TOKENS);
  if (draftTokens() === 0) return 0;
  return Number.isInteger(v) && v >= 0 && v <= 32 ? v : DEFAULT_HISTORY_DRAFT_TOKENS;
}
export const DEFAULT_HISTORY_DRAFT_TOKENS = 16;

/**
 * How many tokens prompt lookup guesses next, from how its last guess fared. A run over more tokens
 * costs more: 2 tokens ~1.05× one token, 3 1.1–1.4×, 5 1.3–2.3× (MatMulNBits at the default model's
 * shapes, models/toolchain/upcycle/kernel_bench.py; ~1.3× for 5 through the whole graph; 2-core Intel
 * VM), so a 4-token guess that misses at its first token wastes about a third of a step, and where the
 * text does not repeat the next guesses miss too. The schedule is the heuristic of
 * Hugging Face's assisted generation: start at 2, a guess kept whole adds 2 (up to `max`), any miss
 * takes 1 off (down to 1, which costs ~5%). VFFN_DRAFT_ADAPT=0 keeps it at `max` (the benchmark's A/B).
 */
export class LookupLength {
  value: number;
  private readonly adapt = process.env.VFFN_DRAFT_ADAPT !== '0';

  constructor(private readonly max: number) {
    this.value = this.adapt ? Math.min(LOOKUP_START, max) : max;
  }

  /** The last guess had `guessed` tokens, of which the first `kept` were what greedy decoding picked. */
  record(guessed: number, kept: number): void {
    if (!this.adapt || guessed === 0) return;
    this.value = kept >= guessed ? Math.min(this.max, this.value + 2) : Math.max(1, this.value - 1);
  }
}
export const LOOKUP_START = 2;

/** Whether prompt lookup falls back to a one-token guess from the last token alone (VFFN_DRAFT_UNIGRAM=0: not; the benchmark's A/B). */
function unigramDrafts(): boolean {
  return process.env.VFFN_DRAFT_UNIGRAM !== '0';
}

/** How many of `guess`, made when `at` tokens had been generated, are what was generated after them. */
export function keptOf(guess: readonly number[], generated: readonly number[], at: number): number {
  let k = 0;
  while (k < guess.length && generated[at + k] === guess[k]) k++;
  return k;
}

/**
 * Prompt lookup (a draft for Generator.nextTokens): when the last `n` tokens (n = 3, then 2) occurred
 * earlier in `context`, the tokens that followed their latest earlier occurrence. Code repeats itself
 * (names, argument lists, the suffix after the cursor), so the guess is often right, and checking it
 * costs one model run for several tokens.
 */
export function promptLookup(context: readonly number[], max: number, minNgram = 2, maxNgram = 3): number[] {
  for (let n = Math.min(maxNgram, context.length - 1); n >= minNgram; n--) {
    const end = context.length - n;
    for (let start = end - 1; start >= 0; start--) {
      let k = 0;
      while (k < n && context[start + k] === context[end + k]) k++;
      if (k === n) return context.slice(start + n, Math.min(start + n + max, context.length)) as number[];
    }
  }
  return [];
}

/**
 * A draft from what the cache held before this request (`history`: the previous prompt and the
 * completion generated after it, from a few tokens before where the new prompt departs from it).
 * After a typed character the new completion is most often the rest of the previous one, so that is
 * checked in one run instead of being generated token by token. Looks for the last `n` tokens of
 * `context` (n = 4 down to 2) and takes what followed their first occurrence: the region starts at the
 * departure, so the first occurrence is the one in step with the previous completion.
 */
export function historyLookup(history: readonly number[], context: readonly number[], max: number, minNgram = 2, maxNgram = 4): number[] {
  for (let n = Math.min(maxNgram, context.length); n >= minNgram; n--) {
    const key = context.slice(context.length - n);
    for (let start = 0; start + n < history.length; start++) {
      let k = 0;
      while (k < n && history[start + k] === key[k]) k++;
      if (k === n) return history.slice(start + n, start + n + max) as number[];
    }
  }
  return [];
}

/** Tokens of the previous prompt kept before the point where a new prompt departs from the cache, so a draft's n-gram can match there. */
export const HISTORY_OVERLAP = 4;

/**
 * Most prompt tokens after the point where a new prompt departs from the cache for the cache to count
 * as this request's history: a typed character or two re-tokenize the prefix's last few tokens; a
 * prompt that departs earlier (another place in the file, another file) has no previous completion here.
 */
export const HISTORY_MAX_NEW_TOKENS = 8;

/**
 * The part of the cache's tokens a history draft may come from: empty when `promptIds` departs nowhere
 * before the cache's end, or too early to be the same place (HISTORY_MAX_NEW_TOKENS).
 */
export function draftHistory(cache: Pick<KvCache, 'tokens' | 'commonPrefixLength'>, promptIds: readonly number[]): number[] {
  const common = cache.commonPrefixLength(promptIds);
  if (common >= cache.tokens.length || promptIds.length - common > HISTORY_MAX_NEW_TOKENS) return [];
  return cache.tokens.slice(Math.max(0, common - HISTORY_OVERLAP));
}

/**
 * The draft for each step of one request: from `history` (draftHistory) when its n-gram matches, else
 * prompt lookup, as many tokens as LookupLength allows after the previous guesses. Before the first
 * pick a draft must spell the healed text (`heal`, token healing): one that cannot (a typed character
 * the previous completion did not have) would fail at its first token.
 */
export function draftSource(tok: { tokenText(id: number): string }, promptIds: readonly number[], heal: string | null,
  history: readonly number[]): (generated: readonly number[]) => number[] {
  const maxHistory = historyDraftTokens();
  const lookupLength = new LookupLength(draftTokens());
  // The last prompt-lookup guess and how many tokens had been generated when it was made: the next
  // call sees what greedy decoding picked after it (a rejected guess token is never generated).
  let last: { guess: number[]; at: number } | null = null;
  return (generated) => {
    if (last) lookupLength.record(last.guess.length, keptOf(last.guess, generated, last.at));
    last = null;
    const context = [...promptIds, ...generated];
    const fits = (d: number[]) => generated.length > 0 || !heal || draftSpellsHeal(tok, d, heal);
    const fromHistory = maxHistory > 0 ? historyLookup(history, context, maxHistory) : [];
    if (fromHistory.length && fits(fromHistory)) return fromHistory;
    if (lookupLength.value === 0) return [];   // prompt lookup off (VFFN_DRAFT_TOKENS=0)
    const lookup = promptLookup(context, lookupLength.value);
    // No 2-gram repeats: one token guessed from the last token alone (a run of 2 costs ~5% more than 1).
    if (!lookup.length && unigramDrafts()) lookup.push(...promptLookup(context, 1, 1, 1));
    if (!lookup.length || !fits(lookup)) return [];
    last = { guess: lookup, at: generated.length };
    return lookup;
  };
}
