// Names and empty values that the extension, the backend and the webview share: each is
// defined here once. No runtime imports (only types from protocol.ts), so the webview bundle
// can include this file without the LSP library.
import type {
  AnalyzeResult, CompleteParams, CompleteResult, ComputeSummary, PrefillResult, PrefillState, StopReason, Timings,
} from './protocol';

/**
 * Execution providers of onnxruntime-node, in the order the UI lists them (cpu first). The
 * same list is the enum of graph.variants.*.providers in models/manifest.schema.json and of
 * the `versatileffn.provider` setting in package.json (tests check both).
 */
export const EXECUTION_PROVIDERS = ['cpu', 'webgpu', 'cuda', 'dml', 'coreml'] as const;
/** What a user may ask for: a provider, or `auto` (the fastest that works here). */
export const PROVIDER_PREFERENCES = ['auto', ...EXECUTION_PROVIDERS] as const;

export function isExecutionProvider(v: unknown): v is (typeof EXECUTION_PROVIDERS)[number] {
  return typeof v === 'string' && (EXECUTION_PROVIDERS as readonly string[]).includes(v);
}

export function isProviderPreference(v: unknown): v is (typeof PROVIDER_PREFERENCES)[number] {
  return typeof v === 'string' && (PROVIDER_PREFERENCES as readonly string[]).includes(v);
}

/**
 * The stages and counts of one request (protocol.ts `Timings` has exactly these keys):
 * queueMs (waiting for the engine), tokenizeMs (prompt assembly), prefillMs, firstTokenMs (from
 * arrival to the first generated token), firstLineMs (from arrival to the first line sent ahead of a
 * multi-line completion, CompletePartial; 0 when none was), decodeMs, postprocessMs, totalMs; promptTokens,
 * reusedTokens (prompt tokens served from the KV cache), generatedTokens, replayedTokens (generated
 * tokens the request before had already picked after the same tokens, handed out with no model run:
 * engine/replay.ts).
 */
export const TIMING_KEYS = [
  'queueMs', 'tokenizeMs', 'prefillMs', 'firstTokenMs', 'firstLineMs', 'decodeMs', 'postprocessMs', 'totalMs',
  'promptTokens', 'reusedTokens', 'generatedTokens', 'replayedTokens',
] as const;
export type TimingKey = (typeof TIMING_KEYS)[number];

/**
 * Decode speed of one request: the tokens the model picked after the first, per second of decoding.
 * Tokens handed out from the request before (replayedTokens) took no decoding, so they do not count;
 * null when nothing was decoded.
 */
export function decodeTokensPerSecond(t: Pick<Timings, 'decodeMs' | 'generatedTokens' | 'replayedTokens'>): number | null {
  const decoded = t.generatedTokens - (t.replayedTokens ?? 0) - 1;
  return t.decodeMs > 0 && decoded > 0 ? (decoded * 1000) / t.decodeMs : null;
}

export function emptyTimings(): Timings {
  const t = {} as Timings;
  for (const k of TIMING_KEYS) t[k] = 0;
  return t;
}

/** A compute summary of no tokens (loopShare has one 0 per possible loop count, when known). */
export function emptyCompute(maxLoops = 0): ComputeSummary {
  return { meanLoopsPerLayer: [], loopShare: new Array<number>(maxLoops).fill(0), vsDense: 0, vsMax: 0 };
}

/** The result of a completion that produced nothing: cancelled, superseded, refused or failed (`error`). */
export function emptyCompleteResult(
  params: Pick<CompleteParams, 'requestId'> | null | undefined, model: string, provider: CompleteResult['provider'],
  stopReason: StopReason, error?: string, maxLoops = 0,
): CompleteResult {
  return {
    requestId: typeof params?.requestId === 'string' ? params.requestId : String(params?.requestId ?? ''),
    completion: '', tokens: [], stopReason, trimmed: [], timings: emptyTimings(), compute: emptyCompute(maxLoops),
    model, provider, ...(error !== undefined ? { error } : {}),
  };
}

/** A prefill's result before anything was read (its state says why nothing was). */
export function emptyPrefillResult(
  params: Pick<CompleteParams, 'requestId'> | null | undefined, model: string, state: PrefillState, error?: string,
): PrefillResult {
  return {
    requestId: typeof params?.requestId === 'string' ? params.requestId : String(params?.requestId ?? ''),
    model, state, promptTokens: 0, reusedTokens: 0, readTokens: 0, prefillMs: 0, totalMs: 0, ...(error !== undefined ? { error } : {}),
  };
}

/** The result of an analysis that produced nothing, with the reason. */
export function emptyAnalyzeResult(model: string, error: string, maxLoops = 0): AnalyzeResult {
  return { tokens: [], compute: emptyCompute(maxLoops), model, timings: emptyTimings(), error };
}
