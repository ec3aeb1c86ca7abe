// How many tokens a prompt may have, from this model's measured prefill speed on this machine: a cold
// file (nothing in the KV cache) should cost about COLD_PROMPT_MS before the first token, whatever the
// model and the CPU. Measured once per model file, machine and thread count, then cached.
import type { Manifest } from './modelFolder';
import { calibrationCacheFile, calibrationKey, timingIds, writeCalibrationCache } from './calibrate';
import { prefillChunk } from './generator';
import { KvCache } from './kvCache';
import { DEFAULT_MAX_PROMPT_TOKENS } from './prompt';
import type { ModelSession } from './session';
import { readJsonObject } from './userCache';

/**
 * What a cold completion may spend reading its prompt. Paid once per place in a file: typing there
 * reuses the cache, and keystrokes during a cold prefill interrupt it between chunks without losing the
 * chunks done. On a 2-core machine the 0.5B model prefills ~266 tokens/s: 1.5 s gave it 384 tokens,
 * 2.5 s 640 and 4 s the whole 1,024-position context; the product's FIM exact match was 118, 140 and
 * 161 of 500 cases (docs/SPEED.md, "How long a prompt").
 */
export const COLD_PROMPT_MS = 4_000;
/** Below this the model sees too little of the file to be useful, however slow the machine. */
export const MIN_PROMPT_TOKENS = 256;
/** Budgets are multiples of this, so that noise in the measurement rarely moves them. */
const BUDGET_STEP = 64;
const PROBE_CHUNKS = 1;   // one chunk a run: ~0.5 s for the 0.5B model, measured once per machine

export interface PromptBudgetChoice {
  tokens: number;
  prefillTokensPerSecond: number;
  cached: boolean;
}

/** What a loaded model carries of its budget (LoadedModel). */
export interface PromptBudgetState {
  promptTokens: number;
  /** 0 when VFFN_MAX_PROMPT_TOKENS fixed the budget: then nothing is learned. */
  prefillTokensPerSecond: number;
  promptCap: number;
  /** The calibration cache entry to update (absent: nothing is written). */
  budgetKey?: string;
}

export function prefillSpeedKey(session: ModelSession, manifest: Manifest, threads: number): string {
  return `prefill-speed|${calibrationKey(manifest, [session.activeProvider], threads)}`;
}

/**
 * Learns from a real prefill: when `tokens` (at least a chunk) ran faster than the speed behind the
 * budget, by more than a tenth, the budget grows to match and the cache is updated. The first
 * measurement may have shared the cores with other work; the budget should not stay that small.
 * It only grows, and in steps of 64 tokens, so the prompt's start rarely moves (the KV cache keeps
 * serving). Returns true when the budget changed.
 */
export function observePrefill(m: PromptBudgetState, tokens: number, ms: number, cacheFile = calibrationCacheFile()): boolean {
  if (m.prefillTokensPerSecond <= 0 || tokens < prefillChunk() || ms <= 0) return false;
  const rate = (tokens * 1000) / ms;
  if (rate <= m.prefillTokensPerSecond * 1.1) return false;
  m.prefillTokensPerSecond = rate;
  const before = m.promptTokens;
  m.promptTokens = budgetFor(rate, m.promptCap);
  if (m.budgetKey) savePrefillSpeed(cacheFile, m.budgetKey, rate);
  return m.promptTokens !== before;
}

/** Tokens that prefill in `targetMs` at the measured speed, in steps of 64, within [MIN_PROMPT_TOKENS, cap]. */
export function budgetFor(tokensPerSecond: number, cap = DEFAULT_MAX_PROMPT_TOKENS, targetMs = COLD_PROMPT_MS): number {
  if (!(tokensPerSecond > 0)) return Math.min(cap, MIN_PROMPT_TOKENS);
  const fit = Math.floor((tokensPerSecond * targetMs) / 1000 / BUDGET_STEP) * BUDGET_STEP;
  return Math.max(Math.min(MIN_PROMPT_TOKENS, cap), Math.min(cap, fit));
}

/**
 * Prefill tokens per second: the faster of two runs of PROBE_CHUNKS chunks on an empty cache, after a
 * warm-up run. The faster, not the median: the first load may share the cores with other work, and a
 * budget measured then would stay too small for as long as it is cached.
 */
export async function measurePrefillSpeed(session: ModelSession, manifest: Manifest): Promise<number> {
  const size = prefillChunk();
  const n = Math.min(PROBE_CHUNKS * size, manifest.architecture.context_length - 1);
  const special = [...Object.values(manifest.tokenizer.special_ids ?? {}), ...(manifest.generation?.stop_ids ?? [])];
  const ids = timingIds(n, manifest.architecture.vocab_size, special);
  const rates: number[] = [];
  for (let r = 0; r < 3; r++) {
    const cache = new KvCache(session.kv);
    try {
      const t0 = performance.now();
      for (let s = 0; s < n; s += size) await session.step(ids.slice(s, s + size), cache, 1);
      if (r > 0) rates.push((n * 1000) / Math.max(1e-3, performance.now() - t0));
    } finally {
      cache.dispose();
    }
  }
  return Math.max(...rates);
}

/**
 * The prompt budget of `session`'s model here: from the cache, else measured (a second or two on a
 * 0.5B model) and cached. `cap` bounds it (the context, or VFFN_MAX_PROMPT_TOKENS when set).
 */
export async function promptBudget(
  session: ModelSession, manifest: Manifest, threads: number, cap: number,
  opts: { cacheFile?: string; log?: (m: string) => void } = {},
): Promise<PromptBudgetChoice> {
  const file = opts.cacheFile ?? calibrationCacheFile();
  const key = prefillSpeedKey(session, manifest, threads);
  const hit = readJsonObject<{ prefillTokensPerSecond: number }>(file)[key];
  if (hit && hit.prefillTokensPerSecond > 0) {
    return { tokens: budgetFor(hit.prefillTokensPerSecond, cap), prefillTokensPerSecond: hit.prefillTokensPerSecond, cached: true };
  }
  const rate = await measurePrefillSpeed(session, manifest);
  savePrefillSpeed(file, key, rate, opts.log);
  return { tokens: budgetFor(rate, cap), prefillTokensPerSecond: rate, cached: false };
}

function savePrefillSpeed(file: string, key: string, rate: number, log?: (m: string) => void): void {
  writeCalibrationCache(file, key, { prefillTokensPerSecond: Math.round(rate), measuredAt: new Date().toISOString() }, log);
}
