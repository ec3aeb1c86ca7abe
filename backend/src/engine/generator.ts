// Token generation on one ModelSession + KvCache: prompt prefill reusing the cached prefix, then one
// token per step through composable logits processors and a greedy or seeded sampler.
import type { TokenRouting } from '../../../common/protocol';
import type { KvCache } from './kvCache';
import type { ModelSession } from './session';
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
}

export interface PrefillResult {
  reused: number;
  processed: number;
  /** Routing of every processed prompt position (positions reused from the cache are not included). */
  routing: TokenRouting[];
  /** Logits of every processed position, when asked for; row i predicts token reused + i + 1. */
  allLogits?: Float32Array[];
  cancelled: boolean;
}

/** Prefill runs in chunks so the event loop can take a cancellation between them. */
export const PREFILL_CHUNK = 512;

export class Generator {
  private logits: Float32Array | null = null;
  private readonly generated: number[] = [];
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
   */
  async appendTokens(ids: readonly number[], opts: { fromScratch?: boolean; allLogits?: boolean; shouldStop?: () => boolean } = {}): Promise<PrefillResult> {
    if (ids.length === 0) throw new Error('empty prompt');
    let reused = opts.fromScratch ? 0 : this.cache.commonPrefixLength(ids);
    if (reused === ids.length) reused--; // the last token must run again to give its logits
    this.cache.rewind(reused);
    const routing: TokenRouting[] = [];
    const allLogits: Float32Array[] = [];
    for (let start = reused; start < ids.length; start += PREFILL_CHUNK) {
      if (start > reused && opts.shouldStop?.()) return { reused, processed: start - reused, routing, cancelled: true };
      const chunk = ids.slice(start, start + PREFILL_CHUNK);
      const r = await this.session.step(chunk, this.cache, opts.allLogits ? chunk.length : 1);
      routing.push(...r.routing);
      if (opts.allLogits) for (let i = 0; i < r.numLogits; i++) allLogits.push(r.logits.subarray(i * r.vocab, (i + 1) * r.vocab));
      this.logits = r.logits.subarray((r.numLogits - 1) * r.vocab, r.numLogits * r.vocab);
    }
    return { reused, processed: ids.length - reused, routing, allLogits: opts.allLogits ? allLogits : undefined, cancelled: false };
  }

  /** Picks the next token from the current logits and feeds it to the model (a stop token is not fed). */
  async nextToken(): Promise<GeneratedToken> {
    if (!this.logits) throw new Error('nextToken before appendTokens');
    if (this.finished) throw new Error('generator is done');
    const logits = this.opts.processors?.length ? Float32Array.from(this.logits) : this.logits;
    for (const p of this.opts.processors ?? []) p(logits, this.generated);
    const greedy = this.opts.temperature <= 0;
    const id = greedy ? argmax(logits) : sampleTopP(logits, this.opts.temperature, this.opts.topP, this.opts.rng!);
    const { prob, entropy } = probAndEntropy(logits, id);
    const pickedAt = performance.now();
    this.generated.push(id);
    if (this.opts.stopIds.includes(id)) {
      this.finished = true;
      return { id, prob, entropy, routing: { loops: [], lambdas: [], experts: [], weights: [] }, pickedAt, stepMs: 0, isStop: true };
    }
    const r = await this.session.step([id], this.cache, 1);
    this.logits = r.logits;
    return { id, prob, entropy, routing: r.routing[0], pickedAt, stepMs: performance.now() - pickedAt, isStop: false };
  }

  /** Ends generation (a stop rule fired); the cache keeps what was fed. */
  finish(): void {
    this.finished = true;
  }
}
