// Reading a prompt ahead of need: while the cursor rests at a place, the prompt a completion there
// would run goes into the KV cache, so the first keystroke's completion reuses it instead of waiting
// seconds for a cold prefill (VS Code asks for inline completions only after typing, never on a
// cursor move). It runs at background priority (scheduler.ts) and generates nothing.
import type { CompleteParams, PrefillResult } from '../../../common/protocol';
import { emptyPrefillResult } from '../../../common/vocabulary';
import { preparePrompt } from './completion';
import { Generator } from './generator';
import type { LoadedModel } from './loadedModel';
import { observePrefill } from './promptBudget';
import type { JobControl } from './scheduler';
import { ms } from './telemetry';

export async function runPrefill(m: LoadedModel, params: CompleteParams, ctl: JobControl): Promise<PrefillResult> {
  const prepared = preparePrompt(m, params);
  const result = (state: PrefillResult['state'], fields: Partial<PrefillResult> = {}): PrefillResult => ({
    ...emptyPrefillResult(params, m.name, state), ...fields, totalMs: ms(performance.now() - ctl.arrivedAt),
  });
  if (!prepared) return result('empty_input');
  const ids = prepared.ids;
  const cache = m.kv.pick(ids);
  const reused = cache.commonPrefixLength(ids);
  // Nothing to read: leave the cache as it is (a completion here may continue it with drafts from its history).
  if (reused >= ids.length) return result('cached', { promptTokens: ids.length, reusedTokens: reused });
  const t0 = performance.now();
  const generator = new Generator(m.session, cache, { temperature: 0, topP: 1, stopIds: [] });
  const read = await generator.appendTokens(ids, { shouldStop: () => ctl.stopReason() !== null });
  const prefillMs = performance.now() - t0;
  if (!read.cancelled) observePrefill(m, read.processed, prefillMs);
  return result(read.cancelled ? (ctl.stopReason() ?? 'cancelled') : 'read', {
    promptTokens: ids.length, reusedTokens: read.reused, readTokens: read.processed, prefillMs: ms(prefillMs),
  });
}
