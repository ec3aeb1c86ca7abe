// Turns backend results into what the inspector shows. No vscode import (unit-tested).
// Numbers that are not finite (a NaN entropy arrives as null through JSON) are replaced by
// 0 and counted, so that one odd value does not blank the whole inspector.
import type { AnalyzeResult, CompleteResult, ComputeSummary, Timings, TokenInfo } from '../../../common/protocol';
import { TIMING_KEYS } from '../../../common/vocabulary';
import type { ClientTimings, InspectedRun } from '../../../common/webview';

const NO_CLIENT: ClientTimings = { debounceMs: null, contextMs: null };

export function runFromCompletion(result: CompleteResult, client: ClientTimings = NO_CLIENT, source: InspectedRun['source'] = 'completion'): InspectedRun {
  const fix = new Fixer();
  return {
    id: String(result.requestId),
    source,
    model: String(result.model ?? ''),
    provider: result.provider ?? null,
    text: String(result.completion ?? ''),
    tokens: (result.tokens ?? []).map((t) => fix.token(t)),
    compute: fix.compute(result.compute),
    timings: fix.timings(result.timings),
    client,
    stopReason: result.stopReason ?? null,
    trimmed: result.trimmed ?? [],
    error: result.error ?? null,
    accepted: false,
    repaired: fix.count,
  };
}

export function runFromAnalysis(id: string, text: string, result: AnalyzeResult, provider: string | null): InspectedRun {
  const fix = new Fixer();
  return {
    id,
    source: 'analysis',
    model: String(result.model ?? ''),
    provider,
    text,
    tokens: (result.tokens ?? []).map((t) => fix.token(t)),
    compute: fix.compute(result.compute),
    timings: fix.timings(result.timings),
    client: NO_CLIENT,
    stopReason: null,
    trimmed: [],
    error: result.error ?? null,
    accepted: false,
    repaired: fix.count,
  };
}

class Fixer {
  count = 0;

  num(v: unknown): number {
    if (typeof v === 'number' && Number.isFinite(v)) return v;
    this.count++;
    return 0;
  }

  nums(v: unknown): number[] {
    return Array.isArray(v) ? v.map((x) => this.num(x)) : [];
  }

  pair(v: unknown): [number, number] {
    const a = Array.isArray(v) ? v : [];
    return [this.num(a[0]), this.num(a[1])];
  }

  token(t: TokenInfo): TokenInfo {
    const r = t.routing ?? { loops: [], lambdas: [], experts: [], weights: [] };
    const loops = this.nums(r.loops);
    return {
      id: this.num(t.id),
      text: String(t.text ?? ''),
      prob: this.num(t.prob),
      entropy: this.num(t.entropy),
      routing: {
        loops,
        lambdas: loops.map((_, i) => this.num(r.lambdas?.[i])),
        experts: loops.map((_, i) => this.pair(r.experts?.[i])),
        weights: loops.map((_, i) => this.pair(r.weights?.[i])),
        ...(r.loopProbs ? { loopProbs: r.loopProbs.map((p) => this.nums(p)) } : {}),
        ...(Array.isArray(r.ffnShare) ? { ffnShare: loops.map((_, i) => this.num(r.ffnShare?.[i])) } : {}),
      },
      computeVsDense: this.num(t.computeVsDense),
      computeVsMax: this.num(t.computeVsMax),
    };
  }

  compute(c: ComputeSummary | undefined): ComputeSummary {
    return {
      meanLoopsPerLayer: this.nums(c?.meanLoopsPerLayer),
      loopShare: this.nums(c?.loopShare),
      vsDense: this.num(c?.vsDense),
      vsMax: this.num(c?.vsMax),
      ...(c?.meanFfnShare !== undefined ? { meanFfnShare: this.num(c.meanFfnShare) } : {}),
    };
  }

  timings(t: Timings | undefined): Timings {
    const out = {} as Timings;
    for (const k of TIMING_KEYS) out[k] = this.num(t?.[k]);
    return out;
  }
}
