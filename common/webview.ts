// Messages between the extension host and the inspector webviews (the view and the Compare
// Models panel), and the types they carry. Both sides import this file and validate everything
// they receive: a message of the wrong shape is rejected with a reason and logged, never
// half-used. No vscode import and no runtime import outside common/: the webview bundle
// (media/webview) includes this file, and media/ imports nothing but common/.
import type { ComputeSummary, StopReason, Timings, TokenInfo, TrimInfo } from './protocol';
import { TIMING_KEYS } from './vocabulary';

/** Stages measured in the extension before a completion request left (null: not measured). */
export interface ClientTimings {
  debounceMs: number | null;
  contextMs: number | null;
}

/** Local statistics of one model as the inspector shows them (the extension's stats.ts keeps the counts). */
export interface UsageSummary {
  model: string;
  shown: number;
  accepted: number;
  acceptanceRate: number | null;
  latencyP50Ms: number | null;
  latencyP95Ms: number | null;
}

/** One completion or analysis as the inspector shows it. */
export interface InspectedRun {
  id: string;
  source: 'completion' | 'analysis' | 'compare';
  model: string;
  provider: string | null;
  text: string;
  tokens: TokenInfo[];
  compute: ComputeSummary;
  timings: Timings;
  /** Stages measured in the extension before the request left. */
  client: ClientTimings;
  stopReason: StopReason | null;
  trimmed: TrimInfo[];
  error: string | null;
  /** The user accepted this completion (the view keeps it until the next edit). */
  accepted: boolean;
  /** How many non-finite numbers from the backend were replaced by 0 (shown as a warning). */
  repaired: number;
}

export interface BackendModelStats {
  model: string;
  decodeTokensPerSecond: number | null;
  latencyP50Ms: number | null;
}

export type HostMessage =
  | { type: 'run'; run: InspectedRun }
  | { type: 'compare'; runs: InspectedRun[] }
  | { type: 'stats'; usage: UsageSummary[]; backend: BackendModelStats[] }
  | { type: 'status'; text: string };

export const WEBVIEW_COMMANDS = ['analyzeSelection', 'switchModel', 'showLogs', 'restartBackend', 'compareModels'] as const;
export type WebviewCommand = (typeof WEBVIEW_COMMANDS)[number];

export type WebviewMessage =
  | { type: 'ready' }
  | { type: 'command'; command: WebviewCommand }
  | { type: 'rejected'; reason: string };

export type Parsed<T> = { ok: true; value: T } | { ok: false; reason: string };

export function parseWebviewMessage(data: unknown): Parsed<WebviewMessage> {
  if (!isObject(data) || typeof data.type !== 'string') return fail('not an object with a string "type"');
  switch (data.type) {
    case 'ready':
      return ok({ type: 'ready' });
    case 'command':
      if (typeof data.command !== 'string' || !(WEBVIEW_COMMANDS as readonly string[]).includes(data.command)) {
        return fail(`unknown command ${JSON.stringify(data.command)}`);
      }
      return ok({ type: 'command', command: data.command as WebviewCommand });
    case 'rejected':
      if (typeof data.reason !== 'string') return fail('"rejected" without a string reason');
      return ok({ type: 'rejected', reason: data.reason.slice(0, 500) });
    default:
      return fail(`unknown message type ${JSON.stringify(data.type)}`);
  }
}

export function parseHostMessage(data: unknown): Parsed<HostMessage> {
  if (!isObject(data) || typeof data.type !== 'string') return fail('not an object with a string "type"');
  switch (data.type) {
    case 'run': {
      const why = runProblem(data.run);
      return why ? fail(`run: ${why}`) : ok({ type: 'run', run: data.run as InspectedRun });
    }
    case 'compare': {
      if (!Array.isArray(data.runs)) return fail('compare: runs is not an array');
      for (const [i, run] of data.runs.entries()) {
        const why = runProblem(run);
        if (why) return fail(`compare: runs[${i}]: ${why}`);
      }
      return ok({ type: 'compare', runs: data.runs as InspectedRun[] });
    }
    case 'stats': {
      if (!Array.isArray(data.usage) || !data.usage.every(isUsageSummary)) return fail('stats: bad usage list');
      if (!Array.isArray(data.backend) || !data.backend.every(isBackendStats)) return fail('stats: bad backend list');
      return ok({ type: 'stats', usage: data.usage as UsageSummary[], backend: data.backend as BackendModelStats[] });
    }
    case 'status':
      if (typeof data.text !== 'string') return fail('status: text is not a string');
      return ok({ type: 'status', text: data.text });
    default:
      return fail(`unknown message type ${JSON.stringify(data.type)}`);
  }
}

/** Why `v` is not an InspectedRun, or null when it is one. */
export function runProblem(v: unknown): string | null {
  if (!isObject(v)) return 'not an object';
  if (typeof v.id !== 'string' || typeof v.model !== 'string' || typeof v.text !== 'string') return 'id, model or text is not a string';
  if (v.source !== 'completion' && v.source !== 'analysis' && v.source !== 'compare') return 'bad source';
  if (v.provider !== null && typeof v.provider !== 'string') return 'bad provider';
  if (!Array.isArray(v.tokens)) return 'tokens is not an array';
  if (v.tokens.length > 4096) return 'too many tokens';
  for (const [i, t] of v.tokens.entries()) {
    const why = tokenProblem(t);
    if (why) return `tokens[${i}]: ${why}`;
  }
  if (!isCompute(v.compute)) return 'bad compute summary';
  if (!isTimings(v.timings)) return 'bad timings';
  if (!isObject(v.client) || !isNumOrNull(v.client.debounceMs) || !isNumOrNull(v.client.contextMs)) return 'bad client timings';
  if (v.stopReason !== null && typeof v.stopReason !== 'string') return 'bad stopReason';
  if (!Array.isArray(v.trimmed) || !v.trimmed.every((t) => isObject(t) && typeof t.rule === 'string' && typeof t.removedText === 'string')) return 'bad trimmed list';
  if (v.error !== null && typeof v.error !== 'string') return 'bad error';
  if (typeof v.accepted !== 'boolean') return 'accepted is not a boolean';
  if (!isNum(v.repaired)) return 'repaired is not a number';
  return null;
}

function tokenProblem(t: unknown): string | null {
  if (!isObject(t)) return 'not an object';
  if (typeof t.text !== 'string' || !isNum(t.id) || !isNum(t.prob) || !isNum(t.entropy)) return 'text, id, prob or entropy missing';
  if (!isNum(t.computeVsDense) || !isNum(t.computeVsMax)) return 'compute missing';
  const r = t.routing;
  if (!isObject(r)) return 'routing missing';
  if (!isNumArray(r.loops) || !isNumArray(r.lambdas)) return 'loops or lambdas not number arrays';
  if (!Array.isArray(r.experts) || !r.experts.every(isPair)) return 'experts not pairs';
  if (!Array.isArray(r.weights) || !r.weights.every(isPair)) return 'weights not pairs';
  if (r.lambdas.length !== r.loops.length || r.experts.length !== r.loops.length || r.weights.length !== r.loops.length) {
    return 'routing arrays differ in length';
  }
  if (r.ffnShare !== undefined && (!isNumArray(r.ffnShare) || r.ffnShare.length !== r.loops.length)) return 'ffnShare is not one number per layer';
  return null;
}

function isCompute(v: unknown): v is ComputeSummary {
  return isObject(v) && isNumArray(v.meanLoopsPerLayer) && isNumArray(v.loopShare) && isNum(v.vsDense) && isNum(v.vsMax)
    && (v.meanFfnShare === undefined || isNum(v.meanFfnShare));
}

function isTimings(v: unknown): v is Timings {
  if (!isObject(v)) return false;
  return TIMING_KEYS.every((k) => isNum(v[k]));
}

function isUsageSummary(v: unknown): boolean {
  return isObject(v) && typeof v.model === 'string' && isNum(v.shown) && isNum(v.accepted)
    && isNumOrNull(v.acceptanceRate) && isNumOrNull(v.latencyP50Ms) && isNumOrNull(v.latencyP95Ms);
}

function isBackendStats(v: unknown): boolean {
  return isObject(v) && typeof v.model === 'string' && isNumOrNull(v.decodeTokensPerSecond) && isNumOrNull(v.latencyP50Ms);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
function isNum(v: unknown): v is number {
  return typeof v === 'number' && Number.isFinite(v);
}
function isNumOrNull(v: unknown): boolean {
  return v === null || isNum(v);
}
function isNumArray(v: unknown): v is number[] {
  return Array.isArray(v) && v.every(isNum);
}
function isPair(v: unknown): boolean {
  return Array.isArray(v) && v.length === 2 && isNum(v[0]) && isNum(v[1]);
}
function ok<T>(value: T): Parsed<T> {
  return { ok: true, value };
}
function fail<T>(reason: string): Parsed<T> {
  return { ok: false, reason };
}
