// The one protocol between the extension (client) and the backend (server).
// Every custom message is a Params/Result pair plus a RequestType or NotificationType;
// the comment on each says which way it travels. Both sides import this file, so a
// change here is a change to both.
import { NotificationType, ProgressType, RequestType } from 'vscode-languageserver-protocol';
import type { EXECUTION_PROVIDERS, PROVIDER_PREFERENCES, TimingKey } from './vocabulary';

// ---------- shared vocabulary (the lists themselves: vocabulary.ts) ----------

export type ExecutionProvider = (typeof EXECUTION_PROVIDERS)[number];
export type ProviderPreference = (typeof PROVIDER_PREFERENCES)[number];

/** Why generation stopped. `cancelled`/`superseded` results carry an empty completion. */
export type StopReason =
  | 'eot' | 'max_tokens' | 'max_time' | 'dedent' | 'single_line' | 'bracket_balance'
  | 'suffix_repeat' | 'repetition' | 'low_confidence' | 'cancelled' | 'superseded' | 'error' | 'empty_input';

/** One post-processing edit and why it happened (shown in the inspector). */
export interface TrimInfo {
  rule: 'suffix_overlap' | 'duplicate_line' | 'equals_rest_of_line' | 'clashes_with_rest_of_line' | 'repeats_next_lines'
    | 'low_confidence' | 'unfinished_line' | 'trailing_whitespace';
  removedText: string;
}

/** Routing of one token through every layer (arrays are indexed by layer). */
export interface TokenRouting {
  loops: number[];                 // ℓ per layer, 1..max_loops (the manifest's architecture.max_loops)
  lambdas: number[];               // λ = (max_loops − ℓ)/max_loops per layer
  experts: [number, number][];     // the two virtual experts per layer (−1 when unused)
  weights: [number, number][];     // their softmax weights
  loopProbs?: number[][];          // per layer, softmax over the max_loops loop counts
  /** Upcycled models only: per layer, the share (0..1) of the FFN's hidden units this token used in loop 1. */
  ffnShare?: number[];
}

export interface TokenInfo {
  id: number;
  text: string;
  prob: number;                    // probability of the chosen token
  entropy: number;                 // of the next-token distribution, in nats
  routing: TokenRouting;
  /** FFN compute of this token over all layers relative to a dense model (1.0 = dense). */
  computeVsDense: number;
  /** The same relative to always running max_loops loops (1.0 = that cost). */
  computeVsMax: number;
}

/** Stage times (ms) and token counts of one request; the keys and their meaning: vocabulary.ts TIMING_KEYS. */
export type Timings = Record<TimingKey, number>;

export interface ComputeSummary {
  meanLoopsPerLayer: number[];     // over generated tokens
  loopShare: number[];             // share of (token, layer) pairs at ℓ = 1 .. max_loops (one entry each)
  vsDense: number;                 // mean over generated tokens
  vsMax: number;
  /** Upcycled models only: mean share of FFN hidden units used, over generated tokens and layers. */
  meanFfnShare?: number;
}

// ---------- completion ----------

export interface ContextChunk { uri: string; text: string; }

export interface CompleteParams {
  requestId: string;
  uri?: string;
  languageId: string;
  prefix: string;
  /**
   * Where `prefix` starts in the document, in characters (UTF-16 code units). The backend cuts the
   * prompt's start on a grid counted from the document's start, so a prefix window that slides with
   * the cursor (the last N lines) does not move the cut on every new line. Absent: 0.
   */
  prefixOffset?: number;
  suffix: string;
  contextChunks?: ContextChunk[];
  maxTokens?: number;
  maxTimeMs?: number;
  temperature?: number;            // 0 = greedy; absent: the model's generation.temperature (manifest), else 0
  topP?: number;                   // absent: the model's generation.top_p, else 1
  seed?: number;                   // required for reproducible sampling
  confidenceCutoff?: number;       // cut at the first token with prob below this (0 = off)
  includePromptTokens?: boolean;   // return routing for prompt tokens too
  model?: string;                  // run on a specific loaded model (Compare Models); default: active
  /**
   * LSP partial results: with a token, a multi-line completion's first line is sent as a
   * CompletePartialProgress on it as soon as it is generated (the result still carries the whole completion).
   */
  partialResultToken?: string | number;
}

export interface CompleteResult {
  requestId: string;
  completion: string;              // the text to insert at the cursor
  tokens: TokenInfo[];             // generated tokens (before trimming)
  promptTokens?: TokenInfo[];
  stopReason: StopReason;
  trimmed: TrimInfo[];
  timings: Timings;
  compute: ComputeSummary;
  model: string;
  provider: ExecutionProvider;
  error?: string;                  // set with stopReason 'error'; completion is ''
}

/** client → server: complete at a position. Cancel with $/cancelRequest; a newer request supersedes older ones. */
export const CompleteRequest = new RequestType<CompleteParams, CompleteResult, void>('vffn/complete');

/**
 * The start of a multi-line completion, ready before the rest: its first non-blank line, cut and
 * cleaned by the same rules as a whole completion. The whole one (the request's result) may still
 * differ, for it is cut again once generation ends.
 */
export interface CompletePartial {
  requestId: string;
  model: string;
  completion: string;
  elapsedMs: number;               // from the request's arrival in the backend
}
/** server → client, as $/progress on a vffn/complete's partialResultToken: sent at most once per request. */
export const CompletePartialProgress = new ProgressType<CompletePartial>();

// ---------- reading a prompt ahead (the cursor rests) ----------

/**
 * What a prefill did. `read`: the prompt's uncached tokens ran (all of them); `cached`: nothing was
 * left to run; `superseded` / `cancelled`: stopped between chunks, keeping the chunks read so far.
 */
export type PrefillState = 'read' | 'cached' | 'superseded' | 'cancelled' | 'empty_input' | 'error';

export interface PrefillResult {
  requestId: string;
  model: string;
  state: PrefillState;
  promptTokens: number;            // the prompt a completion here would run
  reusedTokens: number;            // already in the KV cache when the prefill began
  readTokens: number;              // run by this prefill (kept in the cache even when it stopped early)
  prefillMs: number;
  totalMs: number;                 // from arrival, waiting included
  error?: string;
}

/**
 * client → server: read the prompt that a completion with these params would have into the model's
 * KV cache, generating nothing, so that the first completion at a place the cursor rests does not
 * wait for it. Takes the same params as vffn/complete (maxTokens shapes the prompt's budget, so send
 * what the completion will send). Background priority: it never supersedes a completion, runs only
 * when no other request waits, and any newer request (or a newer prefill for the same model) stops it
 * between chunks; the chunks read stay cached.
 */
export const PrefillRequest = new RequestType<CompleteParams, PrefillResult, void>('vffn/prefill');

// ---------- analysis of arbitrary text (inspector "Analyze Selection") ----------

export interface AnalyzeParams { text: string; languageId: string; model?: string; }
export interface AnalyzeResult { tokens: TokenInfo[]; compute: ComputeSummary; model: string; timings: Timings; error?: string; }
/** client → server: run the prompt through the model and return per-token routing. */
export const AnalyzeRequest = new RequestType<AnalyzeParams, AnalyzeResult, void>('vffn/analyze');

// ---------- models ----------

/** versatile: trained VersatileFFN; dense / loop: its baselines; upcycled: a pretrained dense model turned into VersatileFFN. */
export type ModelKind = 'versatile' | 'dense' | 'loop' | 'upcycled';

export interface ModelInfo {
  name: string;
  displayName: string;
  path: string;
  kind: ModelKind;
  parameters: number;
  diskBytes: number;
  nLayer: number;
  dModel: number;
  metrics: Record<string, number | null>;
  active: boolean;
  loadError?: string;              // why this folder cannot be loaded, if known
}
export interface ListModelsResult { active: string | null; models: ModelInfo[]; }
/** client → server: the model folders the backend can see. */
export const ListModelsRequest = new RequestType<void, ListModelsResult, void>('vffn/listModels');

export interface SwitchModelParams { name: string; }
export interface SwitchModelResult { ok: boolean; active: string | null; error?: string; loadMs?: number; }
/** client → server: hot-swap the active model; the old one serves until the new one is ready. */
export const SwitchModelRequest = new RequestType<SwitchModelParams, SwitchModelResult, void>('vffn/switchModel');

// ---------- execution providers ----------

export interface ProviderStatus {
  requested: ProviderPreference;
  active: ExecutionProvider | null;
  available: ExecutionProvider[];  // what this onnxruntime-node build can offer here
  tried: { provider: ExecutionProvider; ok: boolean; error?: string }[];
  reason: string;                  // one sentence: why `active` runs
}
/** client → server: which provider runs and why. */
export const ProviderStatusRequest = new RequestType<void, ProviderStatus, void>('vffn/providerStatus');

export interface SetProviderParams { provider: ProviderPreference; }
/** client → server: choose the provider (reloads the session; falls back to CPU on failure). */
export const SetProviderRequest = new RequestType<SetProviderParams, ProviderStatus, void>('vffn/setProvider');

// ---------- stats ----------

export interface ModelStats {
  requests: number;
  completed: number;
  cancelled: number;
  errors: number;
  latencyP50Ms: number | null;
  latencyP95Ms: number | null;
  decodeTokensPerSecond: number | null;
}
export interface StatsResult { perModel: Record<string, ModelStats>; rssBytes: number; uptimeMs: number; }
/** client → server: counters since the backend started. */
export const StatsRequest = new RequestType<void, StatsResult, void>('vffn/stats');

// ---------- notifications ----------

export type BackendState = 'loading' | 'ready' | 'working' | 'error';

/** The steps of loading a model, in order. */
export type LoadStep = 'verifying files' | 'loading tokenizer' | 'creating session' | 'measuring prefill speed';
/** A model load in progress (a hot swap, a provider change, the first load). */
export interface LoadProgress {
  model: string;                   // the model being loaded
  step: LoadStep;
  elapsedMs: number;               // since the load began; re-sent about once a second while it lasts
}
export interface StatusParams {
  state: BackendState;
  model: string | null;            // the model that answers now (during a hot swap: the old one)
  provider: ExecutionProvider | null;
  message?: string;
  loading?: LoadProgress;          // set while a model loads, whatever the state
}
/** server → client: the backend's state changed (drives the status bar). */
export const StatusNotification = new NotificationType<StatusParams>('vffn/status');

/** server → client: a finished completion's full telemetry (drives the routing inspector). */
export const CompletionTelemetryNotification = new NotificationType<CompleteResult>('vffn/completionTelemetry');

// ---------- initialization ----------

/** Sent as LSP initializationOptions when the extension starts the backend. */
export interface BackendInitOptions {
  modelDirs: string[];             // folders that contain model folders
  defaultModel: string | null;     // name of the model to load first
  provider: ProviderPreference;
  threads: number;                 // 0 = let the backend choose
}
