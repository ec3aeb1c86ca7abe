// Token generation on one ModelSession + KvCache: prompt prefill reusing the cached prefix, then one
// token per step through composable logits processors and a greedy or seeded sampler.
import type { TokenRouting } from '../../../common/protocol';
import type { KvCache, PickRecord } from './kvCache';
import type { ModelSession, StepResult } from './session';
import { probAndEntropy } from './telemetry';

/** Uniform numbers in [0, 1). Passed in explicitly so sampling is reproducible; there is no global RNG. */
export interface Rng {
  next(): number;
}

/** mulberry32: small, fast, good enough for sampling, identical on every platform. */
export function seededRng(seed: number): Rng {
  let a = seed >>> 0;
  return {
    next() {
      a = (a + 0x6d2b79f5) >>> 0;
      let t = a;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    },
  };
}

/** Edits logits in place before a token is picked (e.g. banning ids). */
export type LogitsProcessor = (logits: Float32Array, generated: readonly number[]) => void;

export function banTokens(ids: readonly number[]): LogitsProcessor {
  return (logits) => {
    for (const id of ids) if (id >= 0 && id < logits.length) logits[id] = -Infinity;
  };
}

export function argmax(logits: Float32Array): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
  return best;
}

/** Samples from softmax(logits / temperature) restricted to the smallest top-p nucleus. */
export function sampleTopP(logits: Float32Array, temperature: number, topP: number, rng: Rng): number {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i] > max) max = logits[i];
  const probs = new Float64Array(logits.length);
  let z = 0;
  for (let i = 0; i < logits.length; i++) {
    probs[i] = Math.exp((logits[i] - max) / temperature);
    z += probs[i];
  }
  const order = Array.from(probs.keys()).filter((i) => probs[i] > 0).sort((a, b) => probs[b] - probs[a] || a - b);
  const p = topP > 0 && topP < 1 ? topP : 1;
  let kept = 0;
  let n = 0;
  while (n < order.length && (n === 0 || kept / z < p)) kept += probs[order[n++]];
  let r = rng.next() * kept;
  for (let i = 0; i < n; i++) {
    r -= probs[order[i]];
    if (r < 0) return order[i];
  }
  return order[n - 1];
}

export interface GeneratorOptions {
  temperature: number;   // 0 = greedy
  topP: number;
  rng?: Rng;             // required when temperature > 0
  stopIds: readonly number[];
  processors?: LogitsProcessor[];
}

export interface GeneratedToken {
  id: number;
  prob: number;
  entropy: number;
  /** Routing of the step that fed this token to the model; empty for a stop token, which is never fed. */
  routing: TokenRouting;
  /** performance.now() when the token was picked. */
  pickedAt: number;
  /** Time of the model step that fed this token (0 for a stop token). */
  stepMs: number;
  isStop: boolean;
  /** Handed out from the previous request's picks (appendTokens' `known`) rather than picked from logits. */
  replayed?: boolean;
}

export interface PrefillResult {
  reused: number;
  processed: number;
  /** Routing of every processed prompt position (positions reused from the cache are not included). */
  routing: TokenRouting[];
  /** Logits of every processed position, when asked for; row i predicts token reused + i + 1. */
  allLogits?: Float32Array[];
  /** Guessed tokens fed after the prompt in its last run (appendTokens' `draft`), and how many of them greedy decoding kept. */
  drafted: number;
  accepted: number;
  cancelled: boolean;
}

/**
 * Prefill runs in chunks so that a cancellation can be taken between them and the activations of one
 * run stay small: a 1,000-token run of the 0.5B model peaks near 1.8 GB, chunks of 128 near 0.9 GB
 * (onnxruntime's arena off, 2 cores). With the weights of 2026-12-02 evening (4-bit FFN in layers
 * 6-23) chunks of 128 against 64: prefill 7-10% faster, the bench's peak RSS 713 / 726 against
 * 693 / 703 MB (0.75-0.77x of llama.cpp's, the goal 0.8x), and typing real lines no slower (ghost
 * text p50 / p95 276 / 498 against 282 / 466 ms); a newer keystroke waits at most one 128-token run
 * (~0.4 s) to take over (docs/SPEED.md, "Prefill in chunks of 128 again").
 */
export const PREFILL_CHUNK = 128;

/** The prefill chunk in use: PREFILL_CHUNK, or VFFN_PREFILL_CHUNK (16–1,024) so the benchmark can compare sizes. */
export function prefillChunk(): number {
  const v = Number(process.env.VFFN_PREFILL_CHUNK);
  return Number.isInteger(v) && v >= 16 && v <= 1024 ? v : PREFILL_CHUNK;
}

export class Generator {
  private logits: Float32Array | null = null;
  private readonly generated: number[] = [];
  /** Tokens already picked and fed by appendTokens' draft check, handed out by the next nextTokens. */
  private pending: GeneratedToken[] = [];
  /** The previous request's picks after this prompt (appendTokens' `known`), for the first nextTokens. */
  private known: readonly PickRecord[] = [];
  /** A pick handed out from `known` whose run was left for later: the next nextTokens feeds it (with a draft). */
  private unfed: number | null = null;
  private finished = false;

  constructor(private readonly session: ModelSession, private readonly cache: KvCache, private readonly opts: GeneratorOptions) {
    if (opts.temperature > 0 && !opts.rng) throw new Error('sampling needs an explicit rng (pass a seed)');
  }

  get done(): boolean {
    return this.finished;
  }

  get tokens(): readonly number[] {
    return this.generated;
  }

  /**
   * Makes the cache hold `ids`, reusing its longest common prefix: only the remaining tokens run.
   * `fromScratch` forces a full run (to score every prompt token); `shouldStop` is checked between chunks.
   * `draft` (greedy only, not with `allLogits`): tokens guessed to follow the prompt, fed in its last
   * run; the ones greedy decoding picks anyway come out of the next nextTokens without another run
   * (after a typed character the whole warm completion can take one or two runs).
   * `known` (greedy only, a shared cache): what the previous request picked after this same prompt
   * (KvCache.picksAfter, cut to the picks this request would make the same way); when the first pick
   * is known[0] again, the rest come back without running the model (nextTokens). No draft is fed then.
   */
  async appendTokens(
    ids: readonly number[],
    opts: { fromScratch?: boolean; allLogits?: boolean; shouldStop?: () => boolean; draft?: readonly number[]; known?: readonly PickRecord[] } = {},
  ): Promise<PrefillResult> {
    if (ids.length === 0) throw new Error('empty prompt');
    let reused = opts.fromScratch ? 0 : this.cache.commonPrefixLength(ids);
    this.pending = [];
    this.unfed = null;
    const greedy = this.opts.temperature <= 0 && !opts.allLogits;
    this.known = greedy && this.cache.shared ? opts.known ?? [] : [];
    // The whole prompt is cached and so are the logits its last run gave: nothing to run.
    const kept = !opts.allLogits && reused === ids.length ? this.cache.promptLogits(ids.length) : null;
    if (kept) {
      this.cache.rewind(ids.length);
      this.logits = kept;
      return { reused, processed: 0, routing: [], cancelled: false, drafted: 0, accepted: 0 };
    }
    if (reused === ids.length) reused--; // the last token must run again to give its logits
    this.cache.rewind(reused);
    const guess = greedy && !this.known.length && opts.draft ? this.usableDraft(opts.draft, opts.draft.length) : [];
    const routing: TokenRouting[] = [];
    const allLogits: Float32Array[] = [];
    const size = prefillChunk();
    for (let start = reused; start < ids.length; start += size) {
      if (start > reused && opts.shouldStop?.()) return { reused, processed: start - reused, routing, cancelled: true, drafted: 0, accepted: 0 };
      const chunk = ids.slice(start, start + size);
      const last = start + size >= ids.length;
      const tail = last ? guess : [];
      const t0 = performance.now();
      const r = await this.session.step([...chunk, ...tail], this.cache, opts.allLogits ? chunk.length : 1 + tail.length);
      routing.push(...r.routing.slice(0, chunk.length));
      if (opts.allLogits) {
        for (let i = 0; i < r.numLogits; i++) allLogits.push(r.logits.subarray(i * r.vocab, (i + 1) * r.vocab));
        this.logits = allLogits[allLogits.length - 1];
        continue;
      }
      // The logits that predict the prompt's next token: a request for the same prompt picks from them without a run.
      if (last) this.cache.keepPromptLogits(ids.length, r.logits.subarray(0, r.vocab));
      this.pending = this.keepGuessed(r, tail, chunk.length, ids.length);
      // The run fed the prompt's last chunk and the guess; the kept guesses are charged its time per token fed.
      for (const t of this.pending) t.stepMs = (performance.now() - t0) / (chunk.length + tail.length);
    }
    return {
      reused, processed: ids.length - reused, routing, allLogits: opts.allLogits ? allLogits : undefined, cancelled: false,
      drafted: guess.length, accepted: this.pending.length,
    };
  }

  /** Picks the next token from the current logits and feeds it to the model (a stop token is not fed). */
  async nextToken(): Promise<GeneratedToken> {
    return (await this.nextTokens())[0];
  }

  /**
   * Picks the next token; then, when greedy and `draft` guesses how the text goes on after it, feeds
   * the pick and the guess in one model run (speculative decoding) and keeps every guessed token that
   * greedy decoding would have picked anyway: nextToken's output in fewer runs (up to floating-point
   * differences between one-token and several-token runs, which quantized kernels have; docs/SPEED.md).
   * Guessed tokens that are rejected leave the cache again. `maxDraft` bounds the guess.
   */
  async nextTokens(draft?: (generated: readonly number[]) => readonly number[], maxDraft = 0): Promise<GeneratedToken[]> {
    if (!this.logits) throw new Error('nextToken before appendTokens');
    if (this.finished) throw new Error('generator is done');
    if (this.pending.length) return this.pending.splice(0);
    if (this.unfed !== null) return this.feedUnfed(draft, maxDraft);
    const first = this.pick(this.logits)!;
    if (first.isStop) return [{ ...first, routing: { loops: [], lambdas: [], experts: [], weights: [] }, stepMs: 0 }];
    const known = this.known;
    this.known = [];
    if (known.length && known[0].id === first.id) return this.followKnown(first, known);
    const { routing, kept } = await this.feed(first.id, draft, maxDraft);
    const stepMs = performance.now() - first.pickedAt;
    const out: GeneratedToken[] = [{ ...first, routing, stepMs: 0 }, ...kept];
    // One run fed them all: each token is charged an equal share of its time.
    for (const t of out) t.stepMs = stepMs / out.length;
    return out;
  }

  /**
   * `first` was picked where the previous request picked known[0], from the same cached tokens: the
   * picks that followed it are what greedy decoding picks again, and their keys and values are still
   * in the shared buffer, so they come back without a run. All but the last fed one are taken back
   * into the cache; the last is fed by the next nextTokens, whose run gives the logits after it.
   */
  private followKnown(first: Omit<GeneratedToken, 'routing' | 'stepMs'>, known: readonly PickRecord[]): GeneratedToken[] {
    const out: GeneratedToken[] = [{ ...first, routing: known[0].routing, stepMs: 0 }];
    for (const k of known.slice(1)) {
      this.generated.push(k.id);
      out.push({
        id: k.id, prob: k.prob, entropy: k.entropy, routing: k.routing, pickedAt: performance.now(), stepMs: 0, isStop: k.isStop, replayed: true,
      });
      if (k.isStop) {
        this.finished = true;
        break;
      }
    }
    const fed = out.filter((t) => !t.isStop).map((t) => t.id);
    if (this.finished) {
      this.cache.reclaim(fed);
    } else {
      this.cache.reclaim(fed.slice(0, -1));
      this.unfed = fed[fed.length - 1];
    }
    return out;
  }

  /** Feeds the pick followKnown left unfed, with a draft after it: the guessed tokens greedy decoding keeps. */
  private async feedUnfed(draft: ((generated: readonly number[]) => readonly number[]) | undefined, maxDraft: number): Promise<GeneratedToken[]> {
    const id = this.unfed!;
    this.unfed = null;
    const t0 = performance.now();
    const { kept, fed } = await this.feed(id, draft, maxDraft);
    for (const t of kept) t.stepMs = (performance.now() - t0) / fed;
    return kept;
  }

  /**
   * One run: the picked token `id` (already handed out) and, when greedy, a draft of what follows it;
   * the routing of `id`'s position, the guessed tokens greedy decoding keeps, and how many tokens ran.
   */
  private async feed(id: number, draft: ((generated: readonly number[]) => readonly number[]) | undefined, maxDraft: number)
    : Promise<{ routing: TokenRouting; kept: GeneratedToken[]; fed: number }> {
    const guess = this.opts.temperature <= 0 && draft && maxDraft > 0 ? this.usableDraft(draft(this.generated), maxDraft) : [];
    const before = this.cache.length;
    const r = await this.session.step([id, ...guess], this.cache, guess.length + 1);
    return { routing: r.routing[0], kept: this.keepGuessed(r, guess, 1, before + 1), fed: 1 + guess.length };
  }

  /**
   * The draft check after run `r` fed `guess` at its end (its logits rows 0…guess.length are those of
   * the position before the guess and of each guessed token): keeps the guessed tokens greedy decoding
   * picks anyway, takes the rest out of the cache (which held `cachedBeforeGuess` positions before the
   * guess), and leaves the logits of the last kept position for the next pick. `routingAt`: the run
   * position of the guess's first token.
   */
  private keepGuessed(r: StepResult, guess: readonly number[], routingAt: number, cachedBeforeGuess: number): GeneratedToken[] {
    const row = (i: number) => r.logits.subarray(i * r.vocab, (i + 1) * r.vocab);
    const kept: GeneratedToken[] = [];
    while (kept.length < guess.length) {
      const t = this.pick(row(kept.length), guess[kept.length]);
      if (!t) break;
      kept.push({ ...t, routing: r.routing[routingAt + kept.length], stepMs: 0 });
    }
    if (kept.length < guess.length) this.cache.rewind(cachedBeforeGuess + kept.length);
    this.logits = row(kept.length);
    return kept;
  }

  /**
   * The token the logits choose (processors applied), appended to the generated ids. With `expected`,
   * only if the choice is that token (else null and nothing is appended): a draft check.
   */
  private pick(raw: Float32Array, expected?: number): Omit<GeneratedToken, 'routing' | 'stepMs'> | null {
    const logits = this.opts.processors?.length ? Float32Array.from(raw) : raw;
    for (const p of this.opts.processors ?? []) p(logits, this.generated);
    const greedy = this.opts.temperature <= 0;
    const id = greedy ? argmax(logits) : sampleTopP(logits, this.opts.temperature, this.opts.topP, this.opts.rng!);
    if (expected !== undefined && id !== expected) return null;
    const { prob, entropy } = probAndEntropy(logits, id);
    this.generated.push(id);
    const isStop = this.opts.stopIds.includes(id);
    if (isStop) this.finished = true;
    return { id, prob, entropy, pickedAt: performance.now(), isStop };
  }

  /** The draft up to its first stop token (a stop token is never fed) and at most `max` tokens. */
  private usableDraft(draft: readonly number[], max: number): number[] {
    const out: number[] = [];
    for (const id of draft) {
      if (out.length >= max || this.opts.stopIds.includes(id)) break;
      out.push(id);
    }
    return out;
  }

  /** Ends generation (a stop rule fired); the cache keeps what was fed. */
  finish(): void {
    this.finished = true;
  }
}
