// Completions remembered by the text around the cursor. A look-up also finds a completion
// whose beginning the user has since typed ("typed through") and returns only its rest, so
// the ghost text keeps showing without a new request.
import { Lru } from '../lru';

export interface CachedCompletion {
  completion: string;
  requestId: string;
  model: string;
}

export interface CacheHit extends CachedCompletion {
  /** The part still to insert (the cached text minus what the user typed since). */
  rest: string;
  /** How many characters of the cached completion the user has typed. */
  typed: number;
}

/** Only this much of the prefix takes part in the key: enough to tell places apart. */
const KEY_PREFIX_CHARS = 2000;
/** And this much of the suffix (the rest of the line and a little more). */
const KEY_SUFFIX_CHARS = 200;
/** How far back a typed-through look-up searches. */
const MAX_TYPED_CHARS = 64;

export class CompletionCache {
  private readonly lru: Lru<string, CachedCompletion>;

  constructor(capacity: number) {
    this.lru = new Lru(capacity);
  }

  set(languageId: string, prefix: string, suffix: string, value: CachedCompletion): void {
    if (value.completion.length === 0) return;
    this.lru.set(cacheKey(languageId, prefix, suffix), value);
  }

  get(languageId: string, prefix: string, suffix: string): CacheHit | undefined {
    const exact = this.lru.get(cacheKey(languageId, prefix, suffix));
    if (exact) return { ...exact, rest: exact.completion, typed: 0 };
    const limit = Math.min(MAX_TYPED_CHARS, prefix.length);
    for (let typed = 1; typed <= limit; typed++) {
      const typedText = prefix.slice(prefix.length - typed);
      // A newline typed through ends the search: a new line is a new situation.
      if (typedText.startsWith('\n')) break;
      const earlier = this.lru.peek(cacheKey(languageId, prefix.slice(0, prefix.length - typed), suffix));
      if (!earlier) continue;
      const rest = typedThrough(earlier.completion, typedText);
      if (rest === undefined) continue;
      this.lru.get(cacheKey(languageId, prefix.slice(0, prefix.length - typed), suffix));
      return { ...earlier, rest, typed };
    }
    return undefined;
  }

  clear(): void {
    this.lru.clear();
  }
}

/**
 * What is left of `completion` once the user typed `typed`, or undefined when `typed` is
 * not a proper beginning of it (the user went another way, or typed all of it).
 */
export function typedThrough(completion: string, typed: string): string | undefined {
  if (typed.length === 0) return completion;
  if (typed.length >= completion.length) return undefined;
  if (!completion.startsWith(typed)) return undefined;
  return completion.slice(typed.length);
}

export function cacheKey(languageId: string, prefix: string, suffix: string): string {
  return `${languageId}\u0000${prefix.slice(-KEY_PREFIX_CHARS)}\u0000${suffix.slice(0, KEY_SUFFIX_CHARS)}`;
}
