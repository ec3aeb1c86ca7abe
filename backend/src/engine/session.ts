// A model's graph as the engine uses it: steps of token ids on a KvCache, giving logits and routing.
//
// The graph runs in a thread of its own (sessionThread.ts → sessionWorker.ts), not in the engine's:
// onnxruntime-node 1.30 copies each of the 48 bound KV presents into a new ArrayBuffer on every run
// (~26 MB for the default model, upstream microsoft/onnxruntime#32346), which makes V8 collect often,
// and a full collection in an isolate that also holds the JS tokenizer (~60 MB of objects) costs
// tens of ms on a 2-core machine. Measured on the default model, 40 decode steps after 250 tokens:
// 63-70 ms median per step with the tokenizer in the session's isolate, 38-42 ms with the session in
// its own thread (docs/SPEED.md).
import type { ExecutionProvider, ProviderPreference, ProviderStatus, TokenRouting } from '../../../common/protocol';
import { kvShapeOf, RawRun, SessionRunner } from './graphRunner';
import { KvCache, KvShape } from './kvCache';
import type { Manifest } from './modelFolder';
import { SessionThread } from './sessionThread';

export interface StepResult {
  /** Logits of the last `numLogits` positions, row-major [numLogits, vocab]. */
  logits: Float32Array;
  vocab: number;
  numLogits: number;
  /** Routing of each new position (length = number of new tokens). */
  routing: TokenRouting[];
}

export class ModelSession {
  readonly kv: KvShape;
  /** Most new tokens per graph run (0: no limit); see webgpuMaxChunk. */
  readonly maxChunk: number;
  /** Caches whose buffers this session's runner holds (freed when the cache is disposed). */
  private readonly known = new Set<number>();
  /** Graph runs so far: what a checked draft saves (tests and `vffn bench-drafts` count them). */
  runs = 0;

  constructor(private readonly runner: SessionRunner, manifest: Manifest, readonly provider: ProviderStatus) {
    this.kv = kvShapeOf(manifest);
    this.maxChunk = provider.active === 'webgpu' && manifest.graph.attention !== 'plain' ? webgpuMaxChunk() : 0;
  }

  /** Creates the session from the model folder `dir` in its own thread, with the graph file each provider wants. */
  static async create(dir: string, manifest: Manifest, pref: ProviderPreference, threads: number): Promise<ModelSession> {
    const { runner, status } = await SessionThread.create(dir, manifest, pref, threads);
    return new ModelSession(runner, manifest, status);
  }

  get activeProvider(): ExecutionProvider {
    return this.provider.active ?? 'cpu';
  }

  /** Runs `ids` on top of `cache`, updates the cache, and returns logits for the last `numLogits` positions. */
  async step(ids: readonly number[], cache: KvCache, numLogits = 1): Promise<StepResult> {
    const max = this.maxChunk;
    if (max <= 0 || ids.length <= max) return this.run(ids, cache, numLogits);
    // Several runs of at most `max` new tokens; keep the logits rows of the last `want` positions.
    const want = Math.min(numLogits, ids.length);
    const rows: Float32Array[] = [];
    const routing: TokenRouting[] = [];
    let vocab = 0;
    for (let i = 0; i < ids.length; i += max) {
      const part = ids.slice(i, i + max);
      const here = Math.max(0, Math.min(part.length, want - (ids.length - i - part.length)));
      const r = await this.run(part, cache, Math.max(1, here));
      vocab = r.vocab;
      if (here > 0) rows.push(r.logits.subarray((r.numLogits - here) * r.vocab));
      routing.push(...r.routing);
    }
    const logits = new Float32Array(want * vocab);
    let at = 0;
    for (const row of rows) {
      logits.set(row, at);
      at += row.length;
    }
    return { logits, vocab, numLogits: want, routing };
  }

  private async run(ids: readonly number[], cache: KvCache, numLogits: number): Promise<StepResult> {
    if (ids.length > cache.room) {
      throw new Error(`KV cache full: ${cache.length} + ${ids.length} tokens exceed the model's ${this.kv.capacity} positions`);
    }
    if (!this.known.has(cache.id)) {
      this.known.add(cache.id);
      cache.onDispose(() => {
        this.known.delete(cache.id);
        this.runner.dropCache(cache.id);
      });
    }
    this.runs++;
    const out = await this.runner.run({ ids: [...ids], numLogits, cacheId: cache.id, keep: cache.length });
    cache.append(ids);
    const [, rows, vocab] = out.logits.dims;
    return { logits: out.logits.data, vocab, numLogits: rows, routing: this.readRouting(out, ids.length) };
  }

  async release(): Promise<void> {
    await this.runner.release();
  }

  private readRouting(out: RawRun, t: number): TokenRouting[] {
    const r = out.routing;
    const L = this.kv.nLayer;
    const loops = r.loops?.data as BigInt64Array | undefined;
    const lambda = r.lambda?.data as Float32Array | undefined;
    const experts = r.experts?.data as BigInt64Array | undefined;
    const weights = r.weights?.data as Float32Array | undefined;
    const probs = r.loopProbs?.data as Float32Array | undefined;
    const nLoops = r.loopProbs ? r.loopProbs.dims[2] : 0; // architecture.max_loops: [n_layer, T, max_loops]
    const share = r.ffnShare?.data as Float32Array | undefined;
    const result: TokenRouting[] = [];
    for (let j = 0; j < t; j++) {
      const tr: TokenRouting = { loops: [], lambdas: [], experts: [], weights: [] };
      if (probs) tr.loopProbs = [];
      if (share) tr.ffnShare = [];
      for (let l = 0; l < L; l++) {
        const lt = l * t + j;
        tr.loops.push(loops ? Number(loops[lt]) : 1);
        tr.lambdas.push(lambda ? lambda[lt] : 0);
        tr.experts.push(experts ? [Number(experts[lt * 2]), Number(experts[lt * 2 + 1])] : [-1, -1]);
        tr.weights.push(weights ? [weights[lt * 2], weights[lt * 2 + 1]] : [0, 0]);
        if (probs) tr.loopProbs!.push(Array.from(probs.subarray(lt * nLoops, (lt + 1) * nLoops)));
        if (share) tr.ffnShare!.push(share[lt]);
      }
      result.push(tr);
    }
    return result;
  }
}

/**
 * GroupQueryAttention on onnxruntime-node 1.30's WebGPU provider gives wrong outputs when one run
 * adds 32 or more new tokens (measured through Mesa lavapipe: positions from the 9th on differ by up
 * to 1e1 in the logits; runs of up to 31 new tokens match the CPU provider to 5e-7). So prompts
 * run in pieces of at most 24 tokens there. VFFN_WEBGPU_MAX_CHUNK overrides (0: one run).
 */
export function webgpuMaxChunk(): number {
  const v = process.env.VFFN_WEBGPU_MAX_CHUNK;
  if (v !== undefined && v !== '' && Number.isFinite(Number(v)) && Number(v) >= 0) return Math.floor(Number(v));
  return 24;
}
