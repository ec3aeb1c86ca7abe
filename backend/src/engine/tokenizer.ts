// The model's tokenizer (tokenizer.json, byte-level BPE) through @huggingface/tokenizers.
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import type * as Tokenizers from '@huggingface/tokenizers' with { 'resolution-mode': 'import' };
import { Manifest, ModelFolderError, SpecialIds } from './modelFolder';

// The package is ESM-first but ships a CommonJS build for Node's `require`; esbuild bundles it.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { Tokenizer } = require('@huggingface/tokenizers') as typeof Tokenizers;
type Tokenizer = Tokenizers.Tokenizer;

/**
 * The tokenizer keeps the parsed tokenizer.json it was built from, and its BPE model the merge list
 * split into pairs, though both are read only while it is built (its lookups are tokens_to_ids and
 * bpe_ranks). For Qwen's 151,936 tokens and 151,387 merges they hold ~28 MB of heap, about half of
 * the tokenizer's (measured, @huggingface/tokenizers 0.2.0); encode/decode parity with Python is
 * tested on the trimmed tokenizer.
 */
function dropBuildTables(json: unknown, tok: Tokenizer): void {
  const model = (json as { model?: Record<string, unknown> }).model;
  if (model) {
    delete model.vocab;
    delete model.merges;
  }
  const bpe = (tok as unknown as { model?: { merges?: unknown; bpe_ranks?: unknown } }).model;
  if (bpe?.bpe_ranks instanceof Map && Array.isArray(bpe.merges)) delete bpe.merges;
}

export class CodeTokenizer {
  readonly special: SpecialIds;
  private readonly pieceCache = new Map<number, string>();
  private readonly heads = new Map<string, number[]>();
  /**
   * Where this tokenizer's pre-tokenizer always breaks: at a line's first non-blank character (the
   * project's tokenizers keep the newline with the next line's indentation), at the line's start
   * (Qwen2's keeps indentation apart from the newline), or neither (null: no split).
   */
  readonly splitMode: SplitMode | null;

  /**
   * @param controlIds ids of the tokenizer's special added tokens (markers such as <|im_start|> or
   *   Qwen's [PAD151665] fillers): never text to insert.
   */
  private constructor(private readonly tok: Tokenizer, special: SpecialIds, readonly vocabSize: number, readonly controlIds: readonly number[] = []) {
    this.special = special;
    this.splitMode = SPLIT_MODES.find((mode) => splitIsExact((t) => this.encodeRaw(t), mode)) ?? null;
  }

  static load(dir: string, manifest: Manifest): CodeTokenizer {
    const file = path.join(dir, manifest.tokenizer.file);
    let json: unknown;
    try {
      json = JSON.parse(readFileSync(file, 'utf8'));
    } catch (e) {
      throw new ModelFolderError(`${file} cannot be read as JSON (${(e as Error).message}). Re-export the model.`, file);
    }
    let config: object = {};
    if (manifest.tokenizer.config_file) {
      const cfgFile = path.join(dir, manifest.tokenizer.config_file);
      try {
        config = JSON.parse(readFileSync(cfgFile, 'utf8'));
      } catch (e) {
        throw new ModelFolderError(`${cfgFile} cannot be read as JSON (${(e as Error).message}). Re-export the model.`, cfgFile);
      }
    }
    let tok: Tokenizer;
    try {
      tok = new Tokenizer(json as object, config);
    } catch (e) {
      throw new ModelFolderError(`${file} is not a tokenizer this backend can load (${(e as Error).message}).`, file);
    }
    const special = manifest.tokenizer.special_ids;
    const names = manifest.tokenizer.special_tokens ?? {};
    for (const [key, text] of Object.entries(names)) {
      const want = special[key as keyof SpecialIds];
      const got = tok.token_to_id(text);
      if (want !== undefined && got !== want) {
        throw new ModelFolderError(`${file} maps ${text} to ${got}, but manifest.json says ${want}. Re-export the model.`, file);
      }
    }
    const added = (json as { added_tokens?: { id?: unknown; special?: unknown }[] }).added_tokens;
    const controlIds = Array.isArray(added)
      ? added.filter((t) => t?.special === true && Number.isInteger(t.id)).map((t) => t.id as number)
      : [];
    dropBuildTables(json, tok);
    return new CodeTokenizer(tok, special, manifest.architecture.vocab_size, controlIds);
  }

  /**
   * Token ids of text. Long text is split at a line (at the place `splitMode` says, checked at load to
   * be a pre-tokenizer boundary of this tokenizer, so the ids equal encoding it whole) and the head's
   * ids are remembered: as the user types, only the last lines are encoded again.
   */
  encode(text: string): number[] {
    if (!this.splitMode || text.length < SPLIT_MIN_CHARS || text.length > SPLIT_MAX_CHARS) return this.encodeRaw(text);
    const j = headEnd(text, this.splitMode);
    if (j <= 0) return this.encodeRaw(text);
    const head = text.slice(0, j);
    let ids = this.heads.get(head);
    if (ids) {
      this.heads.delete(head); // refresh its place in the LRU order
    } else {
      ids = this.encodeRaw(head);
      if (this.heads.size >= HEAD_CACHE_SIZE) this.heads.delete(this.heads.keys().next().value as string);
    }
    this.heads.set(head, ids);
    return ids.concat(this.encodeRaw(text.slice(j)));
  }

  /** Token ids of text encoded in one piece. */
  encodeRaw(text: string): number[] {
    if (text === '') return [];
    return this.tok.encode(text, { add_special_tokens: false }).ids;
  }

  decode(ids: readonly number[]): string {
    if (ids.length === 0) return '';
    return this.tok.decode(ids as number[], { skip_special_tokens: false, clean_up_tokenization_spaces: false });
  }

  /** The text of one token on its own (a lone piece of a multi-byte character decodes to U+FFFD). */
  tokenText(id: number): string {
    let s = this.pieceCache.get(id);
    if (s === undefined) {
      s = this.pieceText(id);
      this.pieceCache.set(id, s);
    }
    return s;
  }

  /** tokenText without remembering it: for a pass over the whole vocabulary (token healing's index). */
  pieceText(id: number): string {
    return this.decode([id]);
  }
}

const SPLIT_MIN_CHARS = 1024;
/** Prompts are cut to a few thousand characters; longer text (Analyze Selection) is not worth remembering. */
const SPLIT_MAX_CHARS = 65_536;
/** The tail after the split is at least this long, so typing near the end keeps the same head. */
const TAIL_MIN_CHARS = 256;
const HEAD_CACHE_SIZE = 32;

export type SplitMode = 'indent' | 'lineStart';
const SPLIT_MODES: readonly SplitMode[] = ['indent', 'lineStart'];

/**
 * The last split point at least TAIL_MIN_CHARS before the end, on a line that has a non-blank
 * character after its indentation (spaces and tabs): that character ('indent') or the line's start
 * ('lineStart'). 0: none. Only used when `splitIsExact` holds for the tokenizer and mode.
 */
export function headEnd(text: string, mode: SplitMode = 'indent'): number {
  let nl = text.lastIndexOf('\n', text.length - TAIL_MIN_CHARS);
  while (nl >= 0) {
    const p = firstNonBlank(text, nl + 1);
    if (p >= 0) return mode === 'indent' ? p : nl + 1;
    nl = nl > 0 ? text.lastIndexOf('\n', nl - 1) : -1;
  }
  return 0;
}

/** Position of the first character after spaces and tabs from `start`, when it is not whitespace; else -1. */
function firstNonBlank(text: string, start: number): number {
  let p = start;
  while (p < text.length && (text.charCodeAt(p) === 32 || text.charCodeAt(p) === 9)) p++;
  return p < text.length && /\S/.test(text[p]) ? p : -1;
}

const SPLIT_PROBE = [
  'function f(a, b) {', '    if (a) {', '        return b;  ', '    }', '', '  \t', '\treturn a + b; // x', '}',
  'class X:', '    def g(self, y=1):', '        """doc"""', '        return [y, {"k": 2}]', '', '', '#include <x.h>', '  <|endoftext|>', 'end',
  '  });', '', '\t\t// comment', 'x = 1  \r', '  y = 2\r', '', '    ', '   12345', "  's", '  "str"', 'last',
].join('\n');

/** True when encoding at every split point of `mode` gives the same ids as encoding whole. */
export function splitIsExact(encode: (s: string) => number[], mode: SplitMode): boolean {
  const whole = encode(SPLIT_PROBE);
  for (let nl = SPLIT_PROBE.indexOf('\n'); nl >= 0; nl = SPLIT_PROBE.indexOf('\n', nl + 1)) {
    const p = firstNonBlank(SPLIT_PROBE, nl + 1);
    if (p < 0) continue;
    const i = mode === 'indent' ? p : nl + 1;
    const parts = encode(SPLIT_PROBE.slice(0, i)).concat(encode(SPLIT_PROBE.slice(i)));
    if (parts.length !== whole.length || parts.some((x, k) => x !== whole[k])) return false;
  }
  return true;
}
