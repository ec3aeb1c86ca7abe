// Per-token and per-request numbers: probability, entropy, routing, compute, stage timings.
import type { ComputeSummary, Timings, TokenRouting } from '../../../common/protocol';

export type ModelKind = 'versatile' | 'dense' | 'loop';

/** Cost of the width path relative to one dense FFN pass (top-2 of 8 expert slices, plus the router). */
export const WIDTH_PATH_COST = 1 / 12;
export const MAX_LOOPS = 4;

/** Probability of `chosen` and the distribution's entropy (nats) from raw logits, computed stably. */
export function probAndEntropy(logits: Float32Array, chosen: number, temperature = 1): { prob: number; entropy: number } {
  const t = temperature > 0 ? temperature : 1;
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i] > max) max = logits[i];
  let z = 0;
  let ez = 0; // sum of e^x * x, for the entropy
  for (let i = 0; i < logits.length; i++) {
    const x = (logits[i] - max) / t;
    const e = Math.exp(x);
    // Banned tokens carry -Infinity: their e is 0 and 0 * -Infinity would poison the sum with NaN.
    if (e === 0) continue;
    z += e;
    ez += e * x;
  }
  const logZ = Math.log(z);
  const prob = Math.exp((logits[chosen] - max) / t - logZ);
  const entropy = logZ - ez / z;
  return { prob, entropy: Math.max(0, entropy) };
}

/**
 * FFN compute of one token over all layers relative to a dense model and to always running 4 loops.
 * A VersatileFFN layer costs ℓ loops plus, when ℓ < 4, the width path; dense and k-loop baselines
 * have no width path.
 */
export function computeCost(kind: ModelKind, loops: readonly number[]): { vsDense: number; vsMax: number } {
  if (loops.length === 0) return { vsDense: kind === 'versatile' ? 0 : 1, vsMax: 0 };
  let sum = 0;
  for (const l of loops) {
    if (kind === 'dense') sum += 1;
    else if (kind === 'loop') sum += l;
    else sum += l + (l < MAX_LOOPS ? WIDTH_PATH_COST : 0);
  }
  const vsDense = sum / loops.length;
  return { vsDense, vsMax: vsDense / MAX_LOOPS };
}

export function emptyRouting(): TokenRouting {
  return { loops: [], lambdas: [], experts: [], weights: [] };
}

/** Mean ℓ per layer, share of (token, layer) pairs at each ℓ, and mean compute over the tokens. */
export function summarizeCompute(kind: ModelKind, routings: readonly TokenRouting[]): ComputeSummary {
  const nLayer = routings.reduce((n, r) => Math.max(n, r.loops.length), 0);
  const meanLoopsPerLayer = new Array<number>(nLayer).fill(0);
  const counts = new Array<number>(nLayer).fill(0);
  const loopShare = [0, 0, 0, 0];
  let pairs = 0;
  let vsDense = 0;
  let vsMax = 0;
  let tokens = 0;
  for (const r of routings) {
    if (r.loops.length === 0) continue;
    r.loops.forEach((l, i) => {
      meanLoopsPerLayer[i] += l;
      counts[i]++;
      if (l >= 1 && l <= 4) loopShare[l - 1]++;
      pairs++;
    });
    const c = computeCost(kind, r.loops);
    vsDense += c.vsDense;
    vsMax += c.vsMax;
    tokens++;
  }
  return {
    meanLoopsPerLayer: meanLoopsPerLayer.map((s, i) => (counts[i] ? s / counts[i] : 0)),
    loopShare: loopShare.map((c) => (pairs ? c / pairs : 0)),
    vsDense: tokens ? vsDense / tokens : 0,
    vsMax: tokens ? vsMax / tokens : 0,
  };
}

export function emptyTimings(): Timings {
  return {
    queueMs: 0, tokenizeMs: 0, prefillMs: 0, firstTokenMs: 0, decodeMs: 0, postprocessMs: 0, totalMs: 0,
    promptTokens: 0, reusedTokens: 0, generatedTokens: 0,
  };
}

/** Rounds a millisecond figure to 0.01 ms so results stay readable in JSON. */
export function ms(x: number): number {
  return Math.round(x * 100) / 100;
}

export function percentile(sorted: readonly number[], p: number): number | null {
  if (sorted.length === 0) return null;
  const idx = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[idx];
}
