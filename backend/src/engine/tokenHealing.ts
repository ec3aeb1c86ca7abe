// Token healing for SPM prompts (manifest fim.order "spm"), where the completion continues the
// prefix's last token directly. A prefix cut at the cursor often ends where the model's tokenizer
// would not end a token: "return " ends in a lone space the model never saw before a word (it writes
// " total" as one token), "    " on a new line is one token where the text's own tokenization is
// "   " + " return". So the last prefix token leaves the prompt, and the first picks are held to
// tokens that spell it again: a token that starts with the removed text, or one that is a prefix of
// it (then the rest is held the same way). The completion then starts with the removed text, which
// the engine takes off again.
import type { LogitsProcessor } from './generator';

/** What the tokenizer offers token healing: each id's text and the ids never to generate. */
export interface HealingTokenizer {
  readonly vocabSize: number;
  readonly controlIds: readonly number[];
  tokenText(id: number): string;
  /** tokenText without remembering the result, for one pass over the whole vocabulary (default: tokenText). */
  pieceText?(id: number): string;
}

/**
 * Every generable token's text, sorted, so the tokens that start with a text are one contiguous range.
 * Stored compactly (one string and two typed arrays, ~2 MB for Qwen's 151k tokens) because the
 * backend's V8 heap is marked in full every few decode steps, and 151k separate strings alive
 * there made each step measurably slower (docs/SPEED.md, "Where decode time goes").
 */
export class VocabIndex {
  private readonly ids: Int32Array;       // generable ids, ordered by text, then id
  private readonly starts: Int32Array;    // ids[i]'s text is all.slice(starts[i], starts[i + 1])
  private readonly all: string;

  constructor(tok: HealingTokenizer) {
    const read = tok.pieceText ? (id: number) => tok.pieceText!(id) : (id: number) => tok.tokenText(id);
    const control = new Set(tok.controlIds);
    const texts: string[] = new Array(tok.vocabSize);
    const ids: number[] = [];
    for (let id = 0; id < tok.vocabSize; id++) {
      const text = read(id);
      // Lone pieces of a multi-byte character decode to U+FFFD: they cannot be matched as text.
      if (control.has(id) || text === '' || text.includes('\uFFFD')) continue;
      texts[id] = text;
      ids.push(id);
    }
    ids.sort((a, b) => (texts[a] < texts[b] ? -1 : texts[a] > texts[b] ? 1 : a - b));
    this.ids = Int32Array.from(ids);
    this.starts = new Int32Array(ids.length + 1);
    let at = 0;
    ids.forEach((id, i) => {
      this.starts[i] = at;
      at += texts[id].length;
    });
    this.starts[ids.length] = at;
    this.all = ids.map((id) => texts[id]).join('');
  }

  /** Ids whose text starts with `rest`, and ids whose text is a shorter non-empty prefix of it. */
  candidates(rest: string): number[] {
    const out: number[] = [];
    for (let i = this.lowerBound(rest); i < this.ids.length && this.text(i).startsWith(rest); i++) out.push(this.ids[i]);
    for (let n = 1; n < rest.length; n++) {
      const piece = rest.slice(0, n);
      const i = this.lowerBound(piece);
      if (i < this.ids.length && this.text(i) === piece) out.push(this.ids[i]);   // the lowest id spelling it
    }
    return out;
  }

  private text(i: number): string {
    return this.all.slice(this.starts[i], this.starts[i + 1]);
  }

  private lowerBound(text: string): number {
    let lo = 0;
    let hi = this.ids.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.text(mid) < text) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}

/**
 * The prompt without its last token when that token is the end of the prefix (SPM puts the prefix
 * last) and can be healed: whole characters, no line break (a completion must not start with one).
 * null: nothing to heal.
 */
export function healPrompt(tok: HealingTokenizer, ids: readonly number[], prefixTokens: number): { ids: number[]; text: string } | null {
  if (prefixTokens === 0 || ids.length < 2) return null;
  const text = tok.tokenText(ids[ids.length - 1]);
  if (text === '' || text.includes('\uFFFD') || text.includes('\n') || tok.controlIds.includes(ids[ids.length - 1])) return null;
  return { ids: ids.slice(0, -1), text };
}

/**
 * The ids the engine runs for a built prompt, and the text token healing took out of it (null: none).
 * `tok` null: the model's prompts are not healed (PSM). A last token that does not spell the end of
 * `prefix` (the tokenizer normalizes text, NFC for Qwen) is left alone.
 */
export function promptToRun(tok: HealingTokenizer | null, prompt: { ids: number[]; prefixTokens: number }, prefix: string)
  : { ids: number[]; heal: string | null } {
  const healed = tok ? healPrompt(tok, prompt.ids, prompt.prefixTokens) : null;
  return healed && prefix.endsWith(healed.text) ? { ids: healed.ids, heal: healed.text } : { ids: prompt.ids, heal: null };
}

/** The part of the healed `text` that the pick after `generated` must still spell; null when none is left (or nothing was healed). */
export function healRest(tok: Pick<HealingTokenizer, 'tokenText'>, text: string | null, generated: readonly number[]): string | null {
  let rest = text ?? '';
  for (const id of generated) {
    if (rest === '') break;
    const t = tok.tokenText(id);
    rest = t.length >= rest.length ? '' : rest.slice(t.length);
  }
  return rest === '' ? null : rest;
}

/** Holds the first picks to tokens that spell `text` again (see the top of this file). */
export function healingProcessor(index: VocabIndex, tok: HealingTokenizer, text: string): LogitsProcessor {
  return (logits, generated) => {
    const rest = healRest(tok, text, generated);
    if (rest === null) return;
    const allowed = index.candidates(rest);
    const kept = allowed.map((id) => logits[id]);
    logits.fill(-Infinity);
    allowed.forEach((id, i) => {
      logits[id] = kept[i];
    });
  };
}

/**
 * Whether a draft of the first tokens can pass healingProcessor: its text starts with the healed
 * `text`, or is the start of it. A draft that cannot is rejected at its first token, so checking it
 * would only cost time (a 16-token guess adds ~90 ms to the run on the 0.5B model).
 */
export function draftSpellsHeal(tok: Pick<HealingTokenizer, 'tokenText'>, draft: readonly number[], text: string): boolean {
  let spelled = '';
  for (const id of draft) {
    spelled += tok.tokenText(id);
    if (spelled.length >= text.length) break;
  }
  return spelled.startsWith(text) || (spelled.length < text.length && text.startsWith(spelled));
}
