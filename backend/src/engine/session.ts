// One InferenceSession plus the graph contract of models/FORMAT.md: feeds the KV cache, returns
// logits, routing and the present tensors.
import * as path from 'node:path';
import { InferenceSession, Tensor } from 'onnxruntime-node';
import type { ExecutionProvider, ProviderPreference, ProviderStatus, TokenRouting } from '../../../common/protocol';
import { KvCache, KvShape } from './kvCache';
import { graphFileFor, kvHeads, Manifest } from './modelFolder';
import { createSession, ProbeFeeds } from './providers';

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
  private readonly names: {
    inputIds: string; numLogits: string; pastKey: string[]; pastValue: string[];
    logits: string; presentKey: string[]; presentValue: string[];
    loops?: string; lambda?: string; experts?: string; weights?: string; loopProbs?: string; ffnShare?: string;
    pastLength?: string;
  };

  /** Most new tokens per graph run (0: no limit); see webgpuMaxChunk. */
  readonly maxChunk: number;

  private constructor(private readonly session: InferenceSession, manifest: Manifest, readonly provider: ProviderStatus) {
    const a = manifest.architecture;
    const g = manifest.graph;
    this.maxChunk = provider.active === 'webgpu' && g.attention !== 'plain' ? webgpuMaxChunk() : 0;
    // A shared cache holds the model's whole context: prompts and completions are budgeted within it.
    this.kv = { nLayer: a.n_layer, nHead: kvHeads(manifest), headDim: g.head_dim, ...(g.kv === 'shared' ? { capacity: a.context_length } : {}) };
    const per = (pattern: string) => Array.from({ length: a.n_layer }, (_, i) => pattern.replace('{i}', String(i)));
    const outputs = new Set(session.outputNames);
    const opt = (name?: string) => (name && outputs.has(name) ? name : undefined);
    this.names = {
      inputIds: g.inputs.input_ids, numLogits: g.inputs.num_logits,
      pastKey: per(g.inputs.past_key), pastValue: per(g.inputs.past_value),
      logits: g.outputs.logits, presentKey: per(g.outputs.present_key), presentValue: per(g.outputs.present_value),
      loops: opt(g.outputs.loops), lambda: opt(g.outputs.lambda), experts: opt(g.outputs.experts),
      weights: opt(g.outputs.weights), loopProbs: opt(g.outputs.loop_probs),
      ffnShare: opt(g.outputs.ffn_share ?? (a.kind === 'upcycled' ? 'route_ffn_share' : undefined)),
      pastLength: g.kv === 'shared' ? (g.inputs.past_length ?? 'past_length') : undefined,
    };
    const inputs = new Set(session.inputNames);
    const need = [this.names.inputIds, this.names.numLogits, ...this.names.pastKey, ...this.names.pastValue];
    for (const n of this.names.pastLength ? [...need, this.names.pastLength] : need) {
      if (!inputs.has(n)) throw new Error(`${g.file} has no input "${n}" that manifest.json names. Re-export the model.`);
    }
    for (const n of [this.names.logits, ...this.names.presentKey, ...this.names.presentValue]) {
      if (!outputs.has(n)) throw new Error(`${g.file} has no output "${n}" that manifest.json names. Re-export the model.`);
    }
  }

  /** Creates the session from the model folder `dir`, with the graph file each provider wants. */
  static async create(dir: string, manifest: Manifest, pref: ProviderPreference, threads: number): Promise<ModelSession> {
    const a = manifest.architecture;
    const per = (pattern: string) => Array.from({ length: a.n_layer }, (_, i) => pattern.replace('{i}', String(i)));
    const feeds: ProbeFeeds = {
      pastNames: [...per(manifest.graph.inputs.past_key), ...per(manifest.graph.inputs.past_value)],
      nHead: kvHeads(manifest), headDim: manifest.graph.head_dim,
      inputIds: manifest.graph.inputs.input_ids, numLogits: manifest.graph.inputs.num_logits,
      ...(manifest.graph.kv === 'shared' ? { pastLength: manifest.graph.inputs.past_length ?? 'past_length' } : {}),
    };
    const { session, status } = await createSession((p) => path.join(dir, graphFileFor(manifest, p)), pref, threads, feeds);
    try {
      return new ModelSession(session, manifest, status);
    } catch (e) {
      await session.release();
      throw e;
    }
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
    const n = this.names;
    const feeds: Record<string, Tensor> = {
      [n.inputIds]: new Tensor('int64', BigInt64Array.from(ids, (x) => BigInt(x)), [1, ids.length]),
      [n.numLogits]: new Tensor('int64', BigInt64Array.from([BigInt(Math.min(numLogits, ids.length))]), [1]),
    };
    for (let i = 0; i < this.kv.nLayer; i++) {
      feeds[n.pastKey[i]] = cache.key(i);
      feeds[n.pastValue[i]] = cache.value(i);
    }
    let out: InferenceSession.OnnxValueMapType;
    if (cache.shared) {
      if (ids.length > cache.room) {
        throw new Error(`KV cache full: ${cache.length} + ${ids.length} tokens exceed the model's ${this.kv.capacity} positions`);
      }
      feeds[n.pastLength!] = new Tensor('int64', BigInt64Array.from([BigInt(cache.length)]), [1]);
      // Each present is bound to its past buffer: GroupQueryAttention appends in place, nothing is copied.
      const fetches: Record<string, Tensor | null> = {};
      for (const name of this.session.outputNames) fetches[name] = null;   // every output, the presents bound below
      for (let i = 0; i < this.kv.nLayer; i++) {
        fetches[n.presentKey[i]] = cache.key(i);
        fetches[n.presentValue[i]] = cache.value(i);
      }
      out = await this.session.run(feeds, fetches as InferenceSession.FetchesType);
      cache.appendInPlace(ids);
    } else {
      out = await this.session.run(feeds);
      cache.update(ids, n.presentKey.map((k) => out[k]), n.presentValue.map((k) => out[k]));
    }
    const logitsT = out[n.logits];
    const vocab = logitsT.dims[2];
    const routing = this.readRouting(out, ids.length);
    return { logits: logitsT.data as Float32Array, vocab, numLogits: logitsT.dims[1], routing };
  }

  async release(): Promise<void> {
    await this.session.release();
  }

  private readRouting(out: InferenceSession.OnnxValueMapType, t: number): TokenRouting[] {
    const n = this.names;
    const L = this.kv.nLayer;
    const loops = n.loops ? (out[n.loops].data as BigInt64Array) : undefined;
    const lambda = n.lambda ? (out[n.lambda].data as Float32Array) : undefined;
    const experts = n.experts ? (out[n.experts].data as BigInt64Array) : undefined;
    const weights = n.weights ? (out[n.weights].data as Float32Array) : undefined;
    const probs = n.loopProbs ? (out[n.loopProbs].data as Float32Array) : undefined;
    const nLoops = n.loopProbs ? out[n.loopProbs].dims[2] : 0; // architecture.max_loops: [n_layer, T, max_loops]
    const share = n.ffnShare ? (out[n.ffnShare].data as Float32Array) : undefined;
    const result: TokenRouting[] = [];
    for (let j = 0; j < t; j++) {
      const r: TokenRouting = { loops: [], lambdas: [], experts: [], weights: [] };
      if (probs) r.loopProbs = [];
      if (share) r.ffnShare = [];
      for (let l = 0; l < L; l++) {
        const lt = l * t + j;
        const ell = loops ? Number(loops[lt]) : 1;
        r.loops.push(ell);
        r.lambdas.push(lambda ? lambda[lt] : 0);
        r.experts.push(experts ? [Number(experts[lt * 2]), Number(experts[lt * 2 + 1])] : [-1, -1]);
        r.weights.push(weights ? [weights[lt * 2], weights[lt * 2 + 1]] : [0, 0]);
        if (probs) r.loopProbs!.push(Array.from(probs.subarray(lt * nLoops, (lt + 1) * nLoops)));
        if (share) r.ffnShare!.push(share[lt]);
      }
      result.push(r);
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
