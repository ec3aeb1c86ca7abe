// Provider choice by measurement, per model and machine: time a prefill and a few decode steps on
// each usable provider, pick the one with the lowest completion cost, and remember the answer in a
// small JSON cache so that the next start pays nothing.
import * as os from 'node:os';
import * as path from 'node:path';
import type { ExecutionProvider } from '../../../common/protocol';
import { KvCache } from './kvCache';
import { graphFileFor, Manifest } from './modelFolder';
import { autoCandidates } from './providers';
import { ModelSession } from './session';
import { median } from './telemetry';
import { readJsonObject, userCacheDir, writeJsonAtomic } from './userCache';

export { userCacheDir };

/** Measured cost of one provider (medians over the repeats). */
export interface ProviderTiming {
  provider: ExecutionProvider;
  prefillMs: number;
  prefillTokens: number;
  /** One decode step (one token on top of the prefilled cache). */
  decodeStepMs: number;
}

export interface CalibrationChoice {
  /** The one provider to run: lowest prefill + `completionTokens` decode steps. */
  provider: ExecutionProvider;
  /** Which would win each phase alone (informational: one session, one KV cache per model). */
  prefillProvider: ExecutionProvider;
  decodeProvider: ExecutionProvider;
  completionTokens: number;
  timings: ProviderTiming[];
  /** One sentence with the measured numbers, for ProviderStatus.reason. */
  reason: string;
}

export interface CalibrateOptions {
  prefillTokens?: number;
  decodeSteps?: number;
  repeats?: number;
  /** Decode steps counted in the completion cost that decides. */
  completionTokens?: number;
  /** Cache file; default: the OS user cache dir (see calibrationCacheFile). */
  cacheFile?: string;
  /** Measure even when the cache has an answer. */
  force?: boolean;
  log?: (msg: string) => void;
}

const DEFAULTS = { prefillTokens: 512, decodeSteps: 16, repeats: 3, completionTokens: 16 };

/** Pure decision: the provider with the lowest prefill + completionTokens × decode step; ties go to the earlier entry. */
export function chooseByTimings(timings: readonly ProviderTiming[], completionTokens = DEFAULTS.completionTokens): CalibrationChoice {
  if (timings.length === 0) throw new Error('calibration: no provider timings to choose from');
  const cost = (t: ProviderTiming) => t.prefillMs + completionTokens * t.decodeStepMs;
  const best = (f: (t: ProviderTiming) => number) => timings.reduce((a, b) => (f(b) < f(a) ? b : a));
  const winner = best(cost);
  const prefill = best((t) => t.prefillMs);
  const decode = best((t) => t.decodeStepMs);
  const fmt = (t: ProviderTiming) =>
    `${t.provider}: prefill ${t.prefillTokens} tok ${t.prefillMs.toFixed(1)} ms, decode ${t.decodeStepMs.toFixed(2)} ms/tok, completion ${cost(t).toFixed(1)} ms`;
  const reason = timings.length === 1
    ? `${winner.provider} runs: the only usable provider (measured ${fmt(winner)}).`
    : `${winner.provider} runs: lowest measured completion cost (prefill + ${completionTokens} decode steps); ${timings.map(fmt).join('; ')}.`
      + (prefill.provider !== decode.provider ? ` Prefill alone is fastest on ${prefill.provider}, decode on ${decode.provider}.` : '');
  return { provider: winner.provider, prefillProvider: prefill.provider, decodeProvider: decode.provider, completionTokens, timings: [...timings], reason };
}

/**
 * Deterministic ordinary token ids for timing runs: from [lo, hi), the ids between the special ids
 * at the bottom of the vocabulary (0..5 in the project's own tokenizers) and those at the top
 * (151643.. in Qwen's).
 */
export function timingIds(n: number, vocab: number, specialIds: readonly number[] = []): number[] {
  const { lo, hi } = ordinaryIdRange(vocab, specialIds);
  const span = Math.max(1, hi - lo);
  return Array.from({ length: n }, (_, i) => lo + ((i * 7919 + 13) % span));
}

/** [lo, hi): above the special ids in the lower half of the vocabulary, below those in the upper half. */
export function ordinaryIdRange(vocab: number, specialIds: readonly number[]): { lo: number; hi: number } {
  let lo = 0;
  let hi = vocab;
  for (const id of specialIds) {
    if (!Number.isInteger(id) || id < 0 || id >= vocab) continue;
    if (id < vocab / 2) lo = Math.max(lo, id + 1);
    else hi = Math.min(hi, id);
  }
  return hi > lo ? { lo, hi } : { lo: 0, hi: vocab };
}

/**
 * Times one session: `repeats` runs (after one warm-up) of a prefill of `prefillTokens` on an empty
 * cache, then `decodeSteps` single-token steps; medians of the prefill time and of the per-step time.
 */
export async function measureSession(session: ModelSession, manifest: Manifest, o: Required<Pick<CalibrateOptions, 'prefillTokens' | 'decodeSteps' | 'repeats'>>): Promise<ProviderTiming> {
  const ctx = manifest.architecture.context_length;
  const prefillTokens = Math.max(1, Math.min(o.prefillTokens, ctx - o.decodeSteps - 1));
  const special = [...Object.values(manifest.tokenizer.special_ids ?? {}), ...(manifest.generation?.stop_ids ?? [])];
  const ids = timingIds(prefillTokens + o.decodeSteps, manifest.architecture.vocab_size, special);
  const prefills: number[] = [];
  const steps: number[] = [];
  for (let r = 0; r <= o.repeats; r++) {
    const cache = new KvCache(session.kv);
    try {
      let t0 = performance.now();
      await session.step(ids.slice(0, prefillTokens), cache, 1);
      const prefillMs = performance.now() - t0;
      t0 = performance.now();
      for (let k = 0; k < o.decodeSteps; k++) await session.step([ids[prefillTokens + k]], cache, 1);
      const stepMs = (performance.now() - t0) / Math.max(1, o.decodeSteps);
      if (r > 0) { // run 0 warms up (kernel compilation, allocations)
        prefills.push(prefillMs);
        steps.push(stepMs);
      }
    } finally {
      cache.dispose();
    }
  }
  return { provider: session.activeProvider, prefillMs: median(prefills), prefillTokens, decodeStepMs: median(steps) };
}

// ---------- the cache ----------

interface CacheEntry extends CalibrationChoice {
  measuredAt: string;
}

export function calibrationCacheFile(): string {
  return path.join(userCacheDir(), 'calibration.json');
}

/** Which machine this is, as far as speed goes. */
export function machineId(threads: number): string {
  const cpus = os.cpus();
  return `${process.platform}-${process.arch} ${cpus[0]?.model?.trim() ?? 'cpu'} x${cpus.length} threads=${threads} node-${process.versions.node}`;
}

/** Cache key: the model's graph files (sha256), the providers measured, the machine. */
export function calibrationKey(manifest: Manifest, providers: readonly ExecutionProvider[], threads: number): string {
  // The weights' external data file too: a rebuild that changes only the weights is another model.
  const files = [...new Set([...providers.map((p) => graphFileFor(manifest, p)), ...(manifest.graph.external_data ?? [])])].sort();
  const shas = files.map((f) => manifest.files?.[f]?.sha256 ?? f).join('+');
  return `${shas}|${[...providers].join(',')}|${machineId(threads)}`;
}

export function readCalibrationCache(file: string): Record<string, CacheEntry> {
  return readJsonObject<CacheEntry>(file); // missing or corrupt: measure again
}

/**
 * Adds one entry (a provider choice, or promptBudget.ts's prefill speed); writes a temp file then
 * renames (never half-written). Failures are not fatal.
 */
export function writeCalibrationCache(file: string, key: string, entry: object, log?: (m: string) => void): void {
  try {
    const all = readJsonObject<object>(file);
    all[key] = entry;
    writeJsonAtomic(file, all);
  } catch (e) {
    log?.(`calibration cache ${file} not written: ${(e as Error).message}`);
  }
}

function validEntry(e: unknown, providers: readonly ExecutionProvider[]): e is CacheEntry {
  const c = e as CacheEntry;
  return !!c && typeof c.provider === 'string' && providers.includes(c.provider) && typeof c.reason === 'string' && Array.isArray(c.timings);
}

/**
 * Measures each of `providers` (which must load: probe GPU ones first) on the model in `dir` and
 * returns the choice, from the cache when it has one. A provider whose session fails to create or
 * run is left out; cpu should be in the list as the fallback.
 */
export async function calibrate(
  dir: string, manifest: Manifest, providers: readonly ExecutionProvider[], threads: number, opts: CalibrateOptions = {},
): Promise<CalibrationChoice & { cached: boolean }> {
  const o = { ...DEFAULTS, ...opts };
  const file = opts.cacheFile ?? calibrationCacheFile();
  const key = calibrationKey(manifest, providers, threads);
  if (!opts.force) {
    const hit = readCalibrationCache(file)[key];
    if (validEntry(hit, providers)) return { ...hit, cached: true };
  }
  const timings: ProviderTiming[] = [];
  for (const p of providers) {
    let session: ModelSession | undefined;
    try {
      session = await ModelSession.create(dir, manifest, p, threads);
      if (session.activeProvider !== p) throw new Error(session.provider.reason);
      const t = await measureSession(session, manifest, o);
      opts.log?.(`calibration ${manifest.name} on ${p}: prefill ${t.prefillTokens} tok ${t.prefillMs.toFixed(1)} ms, decode ${t.decodeStepMs.toFixed(2)} ms/tok`);
      timings.push(t);
    } catch (e) {
      opts.log?.(`calibration ${manifest.name} on ${p} failed: ${(e as Error).message}`);
    } finally {
      await session?.release().catch(() => undefined);
    }
  }
  const choice = chooseByTimings(timings, o.completionTokens);
  writeCalibrationCache(file, key, { ...choice, measuredAt: new Date().toISOString() }, opts.log);
  return { ...choice, cached: false };
}

/**
 * `auto` with measurement: when more than one provider may run here, calibrate (or read the cache)
 * and open the session on the winner. Returns null when only one candidate exists (cpu-only
 * machines pay nothing) or when VFFN_CALIBRATE=0 (then `auto` takes the first GPU provider that loads).
 */
export async function createMeasuredSession(
  dir: string, manifest: Manifest, threads: number, opts: CalibrateOptions & { candidates?: ExecutionProvider[] } = {},
): Promise<ModelSession | null> {
  if (process.env.VFFN_CALIBRATE === '0') return null;
  const candidates = opts.candidates ?? autoCandidates().candidates;
  if (candidates.length <= 1) return null;
  let choice: CalibrationChoice & { cached: boolean };
  try {
    choice = await calibrate(dir, manifest, candidates, threads, opts);
  } catch (e) {
    opts.log?.(`calibration failed, auto takes the first provider that loads: ${(e as Error).message}`);
    return null;
  }
  const session = await ModelSession.create(dir, manifest, choice.provider, threads);
  session.provider.requested = 'auto';
  if (session.activeProvider === choice.provider) {
    session.provider.reason = choice.reason + (choice.cached ? ' (calibration from cache)' : '');
  }
  return session;
}
