// Per-token and per-request numbers: probability, entropy, routing, compute, stage timings; and the
// per-model request counters behind vffn/stats.
import type { CompleteResult, ComputeSummary, ModelKind, ModelStats, TokenRouting } from '../../../common/protocol';
import type { Manifest } from './modelFolder';

export type { ModelKind };

/**
 * What the compute accounting needs from a model (manifest architecture): its kind, how many loops
 * its depth path may run (max_loops), and, for kind "versatile", the width path's cost relative to one
 * dense FFN pass: the output projection (a third of the FFN) over top_k of n_experts expert slices
 * (2 of 8: 1/12).
 */
export interface ComputeShape {
  kind: ModelKind;
  maxLoops: number;
  widthPathCost: number;
}

export function computeShape(a: Pick<Manifest['architecture'], 'kind' | 'max_loops' | 'n_experts' | 'top_k'>): ComputeShape {
  const width = a.kind === 'versatile' && a.n_experts && a.top_k ? a.top_k / a.n_experts / 3 : 0;
  return { kind: a.kind, maxLoops: a.max_loops, widthPathCost: width };
}
/**
 * Upcycled models (a pretrained SwiGLU FFN: gate, up and down projections of equal size): the gate
 * projection always runs (1/3 of a dense FFN); up and down run only for the hidden units kept (2/3 ×
 * the share used).
 */
export const UPCYCLED_GATE_COST = 1 / 3;

/** Probability of `chosen` and the distribution's entropy (nats) from raw logits, computed stably. */
export function probAndEntropy(logits: Float32Array, chosen: number, temperature = 1): { prob: number; entropy: number } {
  const t = temperature > 0 ? temperature : 1;
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i] > max) max = logits[i];
  let z = 0;
  let ez = 0; // sum of e^x * x, for the entropy
  for (let i = 0; i < logits.length; i++) {
    const x = (logits[i] - max) / t;
    // e^-88 is below float precision of any sum here; skipping saves the exp for banned tokens
    // (-Infinity, whose 0 * -Infinity would poison the sum with NaN) and for the tokens a trimmed head
    // leaves out (a large negative logit, FORMAT.md): most of a 152k vocabulary.
    if (x < -88) continue;
    const e = Math.exp(x);
    z += e;
    ez += e * x;
  }
  const logZ = Math.log(z);
  const prob = Math.exp((logits[chosen] - max) / t - logZ);
  const entropy = logZ - ez / z;
  return { prob, entropy: Math.max(0, entropy) };
}

/**
 * FFN compute of one token over all layers relative to a dense model and to always running max_loops
 * loops. A VersatileFFN layer costs ℓ loops plus, when ℓ < max_loops, the width path; dense and k-loop
 * baselines have no width path. An upcycled layer costs the gate projection, the up and down
 * projections of the hidden units it kept in loop 1 (`ffnShare`, 1 when unknown), and a full FFN for
 * each extra loop.
 */
export function computeCost(shape: ComputeShape, loops: readonly number[], ffnShare?: readonly number[]): { vsDense: number; vsMax: number } {
  const { kind, maxLoops } = shape;
  if (loops.length === 0) return { vsDense: kind === 'versatile' || kind === 'upcycled' ? 0 : 1, vsMax: 0 };
  let sum = 0;
  loops.forEach((l, i) => {
    if (kind === 'dense') sum += 1;
    else if (kind === 'loop') sum += l;
    else if (kind === 'upcycled') sum += upcycledLayerCost(l, ffnShare?.[i]);
    else sum += l + (l < maxLoops ? shape.widthPathCost : 0);
  });
  const vsDense = sum / loops.length;
  return { vsDense, vsMax: vsDense / maxLoops };
}

/** One upcycled layer in dense-FFN units: 1/3 + 2/3 × share + (ℓ − 1). */
export function upcycledLayerCost(loops: number, share: number | undefined): number {
  const s = typeof share === 'number' && Number.isFinite(share) ? Math.min(1, Math.max(0, share)) : 1;
  return UPCYCLED_GATE_COST + (1 - UPCYCLED_GATE_COST) * s + Math.max(0, loops - 1);
}

/** Mean ℓ per layer, share of (token, layer) pairs at each ℓ, and mean compute over the tokens. */
export function summarizeCompute(shape: ComputeShape, routings: readonly TokenRouting[]): ComputeSummary {
  const nLayer = routings.reduce((n, r) => Math.max(n, r.loops.length), 0);
  const meanLoopsPerLayer = new Array<number>(nLayer).fill(0);
  const counts = new Array<number>(nLayer).fill(0);
  const loopShare = new Array<number>(shape.maxLoops).fill(0);
  let pairs = 0;
  let vsDense = 0;
  let vsMax = 0;
  let tokens = 0;
  let shareSum = 0;
  let shareCount = 0;
  for (const r of routings) {
    if (r.loops.length === 0) continue;
    r.loops.forEach((l, i) => {
      meanLoopsPerLayer[i] += l;
      counts[i]++;
      if (l >= 1 && l <= shape.maxLoops) loopShare[l - 1]++;
      pairs++;
    });
    for (const x of r.ffnShare ?? []) {
      if (!Number.isFinite(x)) continue;
      shareSum += x;
      shareCount++;
    }
    const c = computeCost(shape, r.loops, r.ffnShare);
    vsDense += c.vsDense;
    vsMax += c.vsMax;
    tokens++;
  }
  return {
    meanLoopsPerLayer: meanLoopsPerLayer.map((s, i) => (counts[i] ? s / counts[i] : 0)),
    loopShare: loopShare.map((c) => (pairs ? c / pairs : 0)),
    vsDense: tokens ? vsDense / tokens : 0,
    vsMax: tokens ? vsMax / tokens : 0,
    ...(shape.kind === 'upcycled' && shareCount > 0 ? { meanFfnShare: shareSum / shareCount } : {}),
  };
}

/** Rounds a millisecond figure to 0.01 ms so results stay readable in JSON. */
export function ms(x: number): number {
  return Math.round(x * 100) / 100;
}

/** The value at percentile `p` (0..100) of an ascending list (nearest rank), or null for none. */
export function percentile(sorted: readonly number[], p: number): number | null {
  if (sorted.length === 0) return null;
  const idx = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[idx];
}

/** The middle value of `xs` (any order; the mean of the two middle ones for an even count), NaN for none. */
export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** One model's request counts, its recent latencies and its decode totals. */
export interface Counters {
  requests: number;
  completed: number;
  cancelled: number;
  errors: number;
  latencies: number[];
  decodeTokens: number;
  decodeMs: number;
}

/** Latencies kept per model for the percentiles. */
const LATENCY_WINDOW = 1000;

/** Counters per model name: what `count` hands out, `record` fills from results, `stats` reports. */
export class RequestCounters {
  private readonly counters = new Map<string, Counters>();

  count(name: string): Counters {
    let c = this.counters.get(name);
    if (!c) {
      c = { requests: 0, completed: 0, cancelled: 0, errors: 0, latencies: [], decodeTokens: 0, decodeMs: 0 };
      this.counters.set(name, c);
    }
    return c;
  }

  /** Counts a finished completion: cancelled, or completed with its latency and decode speed. */
  record(c: Counters, r: CompleteResult): void {
    if (r.stopReason === 'cancelled' || r.stopReason === 'superseded') {
      c.cancelled++;
      return;
    }
    c.completed++;
    c.latencies.push(r.timings.totalMs);
    if (c.latencies.length > LATENCY_WINDOW) c.latencies.shift();
    if (r.timings.generatedTokens > 1) {
      c.decodeTokens += r.timings.generatedTokens - 1;
      c.decodeMs += r.timings.decodeMs;
    }
  }

  stats(): Record<string, ModelStats> {
    const perModel: Record<string, ModelStats> = {};
    for (const [name, c] of this.counters) {
      const sorted = [...c.latencies].sort((a, b) => a - b);
      perModel[name] = {
        requests: c.requests, completed: c.completed, cancelled: c.cancelled, errors: c.errors,
        latencyP50Ms: percentile(sorted, 50), latencyP95Ms: percentile(sorted, 95),
        decodeTokensPerSecond: c.decodeMs > 0 ? (c.decodeTokens / c.decodeMs) * 1000 : null,
      };
    }
    return perModel;
  }
}
