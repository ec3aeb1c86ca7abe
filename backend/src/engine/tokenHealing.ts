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
}

/** Every generable token's text, sorted, so the tokens that start with a text are one contiguous range. */
export class VocabIndex {
  private readonly texts: string[] = [];
  private readonly ids: number[] = [];
  private readonly byText = new Map<string, number>();

  constructor(tok: HealingTokenizer) {
    const control = new Set(tok.controlIds);
    const entries: [string, number][] = [];
    for (let id = 0; id < tok.vocabSize; id++) {
      const text = tok.tokenText(id);
      // Lone pieces of a multi-byte character decode to U+FFFD: they cannot be matched as text.
      if (control.has(id) || text === '' || text.includes('\uFFFD')) continue;
      entries.push([text, id]);
      if (!this.byText.has(text)) this.byText.set(text, id);
    }
    entries.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] - b[1]));
    for (const [text, id] of entries) {
      this.texts.push(text);
      this.ids.push(id);
    }
  }

  /** Ids whose text starts with `rest`, and ids whose text is a shorter non-empty prefix of it. */
  candidates(rest: string): number[] {
    const out: number[] = [];
    for (let i = this.lowerBound(rest); i < this.texts.length && this.texts[i].startsWith(rest); i++) out.push(this.ids[i]);
    for (let n = 1; n < rest.length; n++) {
      const id = this.byText.get(rest.slice(0, n));
      if (id !== undefined) out.push(id);
    }
    return out;
  }

  private lowerBound(text: string): number {
    let lo = 0;
    let hi = this.texts.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.texts[mid] < text) lo = mid + 1;
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

/** Holds the first picks to tokens that spell `text` again (see the top of this file). */
export function healingProcessor(index: VocabIndex, tok: HealingTokenizer, text: string): LogitsProcessor {
  return (logits, generated) => {
    let rest = text;
    for (const id of generated) {
      const t = tok.tokenText(id);
      rest = t.length >= rest.length ? '' : rest.slice(t.length);
      if (rest === '') return;
    }
    const allowed = index.candidates(rest);
    const kept = allowed.map((id) => logits[id]);
    logits.fill(-Infinity);
    allowed.forEach((id, i) => {
      logits[id] = kept[i];
    });
  };
}
