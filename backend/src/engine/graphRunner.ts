// One InferenceSession and the graph contract of models/FORMAT.md: feeds a KV store, runs, and hands
// back logits and the routing outputs as plain arrays. It lives in the session's own thread
// (sessionWorker.ts; session.ts says why), or in-process where a test drives a stand-in session.
import { InferenceSession, Tensor } from 'onnxruntime-node';
import { EmbeddingRows, tokenInput } from './embeddingRows';
import type { KvShape } from './kvCache';
import { KvStore } from './kvStore';
import { kvHeads, Manifest } from './modelFolder';
import type { ProbeFeeds } from './providers';

export interface RunRequest {
  ids: number[];
  numLogits: number;
  /** The engine's KvCache: its id names the store, `keep` is how many of its positions the engine still holds. */
  cacheId: number;
  keep: number;
}

export interface RawTensor<T = Float32Array | BigInt64Array> {
  data: T;
  dims: number[];
}

/** The graph's routing outputs, by their manifest role; absent where the graph has none. */
export type RoutingRole = 'loops' | 'lambda' | 'experts' | 'weights' | 'loopProbs' | 'ffnShare';

export interface RawRun {
  /** [1, numLogits, vocab]. */
  logits: RawTensor<Float32Array>;
  routing: Partial<Record<RoutingRole, RawTensor>>;
}

/** What ModelSession needs from wherever the graph runs. */
export interface SessionRunner {
  run(req: RunRequest): Promise<RawRun>;
  /** Frees the store of a disposed KvCache. */
  dropCache(cacheId: number): void;
  release(): Promise<void>;
}

/** The KV cache this manifest's graph takes (shared: the model's whole context, prompts are budgeted within it). */
export function kvShapeOf(manifest: Manifest): KvShape {
  const a = manifest.architecture;
  const g = manifest.graph;
  return { nLayer: a.n_layer, nHead: kvHeads(manifest), headDim: g.head_dim, ...(g.kv === 'shared' ? { capacity: a.context_length } : {}) };
}

/** Per-layer tensor names from a manifest pattern ({i} = layer). */
function layerNames(pattern: string, nLayer: number): string[] {
  return Array.from({ length: nLayer }, (_, i) => pattern.replace('{i}', String(i)));
}

/** What a provider probe feeds this manifest's graph (providers.ts probeProvider). */
export function probeFeedsOf(manifest: Manifest): ProbeFeeds {
  const g = manifest.graph;
  const n = manifest.architecture.n_layer;
  return {
    pastNames: [...layerNames(g.inputs.past_key, n), ...layerNames(g.inputs.past_value, n)],
    nHead: kvHeads(manifest), headDim: g.head_dim, numLogits: g.inputs.num_logits,
    ...(g.embeddings ? { inputsEmbeds: { name: g.inputs.inputs_embeds!, dModel: manifest.architecture.d_model } } : { inputIds: g.inputs.input_ids! }),
    ...(g.kv === 'shared' ? { pastLength: g.inputs.past_length ?? 'past_length' } : {}),
  };
}

/** The InferenceSession surface GraphRunner uses (a stand-in can play it in tests). */
export type GraphSession = Pick<InferenceSession, 'inputNames' | 'outputNames' | 'run' | 'release'>;

export class GraphRunner implements SessionRunner {
  private readonly names: {
    /** input_ids, or inputs_embeds when the embedding table is read here (embeddingRows.ts). */
    first: string; numLogits: string; pastKey: string[]; pastValue: string[];
    logits: string; presentKey: string[]; presentValue: string[]; pastLength?: string;
    routing: Partial<Record<RoutingRole, string>>;
  };
  private readonly stores = new Map<number, KvStore>();
  readonly kv: KvShape;

  /** embeddings: the table's reader where graph.embeddings is set (the runner closes it on release). */
  constructor(private readonly session: GraphSession, manifest: Manifest, private readonly embeddings?: EmbeddingRows) {
    const a = manifest.architecture;
    const g = manifest.graph;
    this.kv = kvShapeOf(manifest);
    const per = (pattern: string) => layerNames(pattern, a.n_layer);
    const outputs = new Set(session.outputNames);
    const routing: Partial<Record<RoutingRole, string>> = {};
    const roles: [RoutingRole, string | undefined][] = [
      ['loops', g.outputs.loops], ['lambda', g.outputs.lambda], ['experts', g.outputs.experts], ['weights', g.outputs.weights],
      ['loopProbs', g.outputs.loop_probs], ['ffnShare', g.outputs.ffn_share ?? (a.kind === 'upcycled' ? 'route_ffn_share' : undefined)],
    ];
    for (const [role, name] of roles) if (name && outputs.has(name)) routing[role] = name;
    if (!g.embeddings !== !embeddings) throw new Error(`graph.embeddings ${g.embeddings ? 'is set but no reader was opened' : 'is not set, yet rows were given'}`);
    this.names = {
      first: (g.embeddings ? g.inputs.inputs_embeds : g.inputs.input_ids)!, numLogits: g.inputs.num_logits,
      pastKey: per(g.inputs.past_key), pastValue: per(g.inputs.past_value),
      logits: g.outputs.logits, presentKey: per(g.outputs.present_key), presentValue: per(g.outputs.present_value),
      pastLength: g.kv === 'shared' ? (g.inputs.past_length ?? 'past_length') : undefined,
      routing,
    };
    const inputs = new Set(session.inputNames);
    const need = [this.names.first, this.names.numLogits, ...this.names.pastKey, ...this.names.pastValue];
    for (const n of this.names.pastLength ? [...need, this.names.pastLength] : need) {
      if (!inputs.has(n)) throw new Error(`${g.file} has no input "${n}" that manifest.json names. Re-export the model.`);
    }
    for (const n of [this.names.logits, ...this.names.presentKey, ...this.names.presentValue]) {
      if (!outputs.has(n)) throw new Error(`${g.file} has no output "${n}" that manifest.json names. Re-export the model.`);
    }
  }

  async run(req: RunRequest): Promise<RawRun> {
    const n = this.names;
    let store = this.stores.get(req.cacheId);
    if (!store) this.stores.set(req.cacheId, store = new KvStore(this.kv));
    if (store.length < req.keep && !store.regrow(req.keep)) throw new Error(`KV cache ${req.cacheId}: ${req.keep} positions expected, ${store.length} stored`);
    store.rewind(req.keep);
    const feeds: Record<string, Tensor> = {
      [n.first]: tokenInput(req.ids, this.embeddings),
      [n.numLogits]: new Tensor('int64', BigInt64Array.from([BigInt(Math.min(req.numLogits, req.ids.length))]), [1]),
    };
    for (let i = 0; i < this.kv.nLayer; i++) {
      feeds[n.pastKey[i]] = store.key(i);
      feeds[n.pastValue[i]] = store.value(i);
    }
    let out: InferenceSession.OnnxValueMapType;
    if (store.shared) {
      if (store.length + req.ids.length > this.kv.capacity!) {
        throw new Error(`KV cache full: ${store.length} + ${req.ids.length} tokens exceed the model's ${this.kv.capacity} positions`);
      }
      feeds[n.pastLength!] = new Tensor('int64', BigInt64Array.from([BigInt(store.length)]), [1]);
      // Each present is bound to its past buffer: GroupQueryAttention appends in place (onnxruntime-node
      // still copies each present out into a new buffer: docs/SPEED.md, "The graph in a thread of its own").
      const fetches: Record<string, Tensor | null> = {};
      for (const name of this.session.outputNames) fetches[name] = null;   // every output, the presents bound below
      for (let i = 0; i < this.kv.nLayer; i++) {
        fetches[n.presentKey[i]] = store.key(i);
        fetches[n.presentValue[i]] = store.value(i);
      }
      out = await this.session.run(feeds, fetches as InferenceSession.FetchesType);
      store.appendInPlace(req.ids.length);
    } else {
      out = await this.session.run(feeds);
      store.update(req.ids.length, n.presentKey.map((k) => out[k]), n.presentValue.map((k) => out[k]));
    }
    const raw = (t: Tensor): RawTensor => ({ data: t.data as Float32Array | BigInt64Array, dims: [...t.dims] });
    const routing: RawRun['routing'] = {};
    for (const [role, name] of Object.entries(n.routing) as [RoutingRole, string][]) routing[role] = raw(out[name]);
    return { logits: raw(out[n.logits]) as RawTensor<Float32Array>, routing };
  }

  /** The keys and values of one cache (tests look at them). */
  storeOf(cacheId: number): KvStore | undefined {
    return this.stores.get(cacheId);
  }

  dropCache(cacheId: number): void {
    this.stores.get(cacheId)?.dispose();
    this.stores.delete(cacheId);
  }

  async release(): Promise<void> {
    for (const id of [...this.stores.keys()]) this.dropCache(id);
    this.embeddings?.close();
    await this.session.release();
  }
}
