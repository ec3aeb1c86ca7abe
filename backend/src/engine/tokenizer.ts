// The model's tokenizer (tokenizer.json, byte-level BPE) through @huggingface/tokenizers.
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import type * as Tokenizers from '@huggingface/tokenizers' with { 'resolution-mode': 'import' };
import { Manifest, ModelFolderError, SpecialIds } from './modelFolder';

// The package is ESM-first but ships a CommonJS build for Node's `require`; esbuild bundles it.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { Tokenizer } = require('@huggingface/tokenizers') as typeof Tokenizers;
type Tokenizer = Tokenizers.Tokenizer;

export class CodeTokenizer {
  readonly special: SpecialIds;
  private readonly pieceCache = new Map<number, string>();
  private readonly heads = new Map<string, number[]>();
  /** Whether this tokenizer's pre-tokenizer always breaks at the first non-blank character of a line. */
  private readonly splitOk: boolean;

  private constructor(private readonly tok: Tokenizer, special: SpecialIds, readonly vocabSize: number) {
    this.special = special;
    this.splitOk = splitIsExact((t) => this.encodeRaw(t));
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
    return new CodeTokenizer(tok, special, manifest.architecture.vocab_size);
  }

  /**
   * Token ids of text. Long text is split at the first non-blank character of a line (checked at load
   * to be a pre-tokenizer boundary of this tokenizer, so the ids equal encoding it whole) and the
   * head's ids are remembered: as the user types, only the last lines are encoded again.
   */
  encode(text: string): number[] {
    if (!this.splitOk || text.length < SPLIT_MIN_CHARS || text.length > SPLIT_MAX_CHARS) return this.encodeRaw(text);
    const j = headEnd(text);
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
      s = this.decode([id]);
      this.pieceCache.set(id, s);
    }
    return s;
  }
}

const SPLIT_MIN_CHARS = 1024;
/** Prompts are cut to a few thousand characters; longer text (Analyze Selection) is not worth remembering. */
const SPLIT_MAX_CHARS = 65_536;
/** The tail after the split is at least this long, so typing near the end keeps the same head. */
const TAIL_MIN_CHARS = 256;
const HEAD_CACHE_SIZE = 32;

/**
 * The last split point at least TAIL_MIN_CHARS before the end: the first non-blank character of a
 * line (0: none). Only used when `splitIsExact` holds for the tokenizer.
 */
export function headEnd(text: string): number {
  let nl = text.lastIndexOf('\n', text.length - TAIL_MIN_CHARS);
  while (nl >= 0) {
    let p = nl + 1;
    while (p < text.length && (text.charCodeAt(p) === 32 || text.charCodeAt(p) === 9)) p++;
    const c = text.charCodeAt(p);
    if (p < text.length && c !== 10 && c !== 13) return p;
    nl = nl > 0 ? text.lastIndexOf('\n', nl - 1) : -1;
  }
  return 0;
}

const SPLIT_PROBE = [
  'function f(a, b) {', '    if (a) {', '        return b;  ', '    }', '', '  \t', '\treturn a + b; // x', '}',
  'class X:', '    def g(self, y=1):', '        """doc"""', '        return [y, {"k": 2}]', '', '', '#include <x.h>', '  <|endoftext|>', 'end',
].join('\n');

/** True when encoding at every headEnd-style split point gives the same ids as encoding whole. */
function splitIsExact(encode: (s: string) => number[]): boolean {
  const whole = encode(SPLIT_PROBE);
  for (let i = 1; i < SPLIT_PROBE.length; i++) {
    if (SPLIT_PROBE[i - 1] === '\n' || SPLIT_PROBE[i] === '\n' || /\s/.test(SPLIT_PROBE[i])) continue;
    const lineStart = SPLIT_PROBE.lastIndexOf('\n', i - 1) + 1;
    if (SPLIT_PROBE.slice(lineStart, i).trim() !== '') continue;
    const parts = encode(SPLIT_PROBE.slice(0, i)).concat(encode(SPLIT_PROBE.slice(i)));
    if (parts.length !== whole.length || parts.some((x, k) => x !== whole[k])) return false;
  }
  return true;
}
