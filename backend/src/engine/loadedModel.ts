// A model ready to serve: checked folder, tokenizer, one InferenceSession and its KV caches (kvSlots.ts).
import * as path from 'node:path';
import type { LoadStep, ModelInfo, ProviderPreference } from '../../../common/protocol';
import { createMeasuredSession } from './calibrate';
import { collectGarbage } from './collectGarbage';
import { KvSlots } from './kvSlots';
import { Manifest, ModelFolderEntry, readManifest, verifyFiles } from './modelFolder';
import { maxPromptTokens } from './prompt';
import { prefillSpeedKey, promptBudget, PromptBudgetState } from './promptBudget';
import { ModelSession } from './session';
import { VocabIndex } from './tokenHealing';
import { CodeTokenizer } from './tokenizer';

export interface LoadedModel extends PromptBudgetState {
  name: string;
  dir: string;
  manifest: Manifest;
  tokenizer: CodeTokenizer;
  session: ModelSession;
  /** The KV caches: kv.pick(promptIds) gives the one a prompt runs on. */
  kv: KvSlots;
  loadMs: number;
  /** SPM models only: token healing's sorted vocabulary (~1.4 s to build for Qwen's 151k tokens on the 2-core dev VM, so at load, in the engine's worker). */
  vocabIndex?: VocabIndex;
}

/**
 * Checks the folder (manifest, sizes, sha256) and creates the session. Throws with a message naming the file.
 * `onStep` hears each step as it begins (the status bar shows it).
 */
export async function loadModel(
  name: string, dir: string, pref: ProviderPreference, threads: number, onStep?: (step: LoadStep) => void,
): Promise<LoadedModel> {
  const t0 = performance.now();
  onStep?.('verifying files');
  const manifest = readManifest(dir);
  await verifyFiles(dir, manifest);
  onStep?.('loading tokenizer');
  const tokenizer = CodeTokenizer.load(dir, manifest);
  const vocabIndex = manifest.fim.order === 'spm' ? new VocabIndex(tokenizer) : undefined;
  onStep?.('creating session');
  let session: ModelSession;
  try {
    session = (pref === 'auto' ? await createMeasuredSession(dir, manifest, threads) : null)
      ?? await ModelSession.create(dir, manifest, pref, threads);
  } catch (e) {
    throw new Error(`${path.join(dir, manifest.graph.file)} could not be loaded: ${(e as Error).message}`);
  }
  const cap = Math.max(16, Math.min(maxPromptTokens(), manifest.architecture.context_length - 1));
  let budget = { tokens: cap, prefillTokensPerSecond: 0 };
  if (!process.env.VFFN_MAX_PROMPT_TOKENS) {
    onStep?.('measuring prefill speed');
    try {
      budget = await promptBudget(session, manifest, threads, cap);
    } catch (e) {
      await session.release().catch(() => undefined);
      throw new Error(`${path.join(dir, manifest.graph.file)} failed its first runs: ${(e as Error).message}`);
    }
  }
  const kv = new KvSlots(session.kv);
  collectGarbage();   // the load's garbage would otherwise stay resident until the heap next fills
  return {
    name, dir, manifest, tokenizer, session, kv, vocabIndex, loadMs: performance.now() - t0,
    // Most prompt tokens: what prefills in promptBudget.ts's COLD_PROMPT_MS here.
    promptTokens: budget.tokens, prefillTokensPerSecond: budget.prefillTokensPerSecond, promptCap: cap,
    budgetKey: budget.prefillTokensPerSecond > 0 ? prefillSpeedKey(session, manifest, threads) : undefined,
  };
}

export async function releaseModel(m: LoadedModel): Promise<void> {
  m.kv.dispose();
  await m.session.release();
}

export function modelInfo(entry: ModelFolderEntry, active: boolean, loadError?: string): ModelInfo {
  const m = entry.manifest;
  return {
    name: entry.name,
    displayName: m?.display_name ?? entry.name,
    path: entry.path,
    kind: m?.architecture.kind ?? 'versatile',
    parameters: m?.architecture.parameters ?? 0,
    diskBytes: entry.diskBytes,
    nLayer: m?.architecture.n_layer ?? 0,
    dModel: m?.architecture.d_model ?? 0,
    metrics: m?.metrics ?? {},
    active,
    loadError: loadError ?? entry.error,
  };
}
