// The KV cache of one model: which tokens it holds and their keys/values per layer.
import { Tensor } from 'onnxruntime-node';

export interface KvShape {
  nLayer: number;
  /** Heads of the cache: the model's KV heads (n_kv_head with grouped-query attention, else n_head). */
  nHead: number;
  headDim: number;
  /**
   * Set for graphs with kv "shared" (FORMAT.md): the cache is one buffer of this many positions per
   * layer, allocated once; the graph writes new keys/values into it in place, so appending and
   * rewinding never copy it. Unset: tensors of exactly the cached length, replaced on every step.
   */
  capacity?: number;
}

/**
 * Keys and values have layout [1, n_kv_head, P, head_dim] (P = the cached length, or the capacity of a
 * shared cache). `tokens[i]` is the token whose K/V sit at position i, so a new prompt can reuse the
 * longest prefix it shares with `tokens`.
 */
export class KvCache {
  private keys: Tensor[];
  private values: Tensor[];
  private ids: number[] = [];

  constructor(readonly shape: KvShape) {
    this.keys = this.emptyLayers();
    this.values = this.emptyLayers();
  }

  /** A fixed-capacity cache that the graph updates in place (KvShape.capacity). */
  get shared(): boolean {
    return this.shape.capacity !== undefined;
  }

  /** Shared cache: records that the graph wrote `newIds`' keys and values after the cached ones. */
  appendInPlace(newIds: readonly number[]): void {
    if (!this.shared) throw new Error('appendInPlace on a cache that is not shared');
    this.ids.push(...newIds);
  }

  /** Positions left in a shared cache (Infinity otherwise). */
  get room(): number {
    return this.shared ? this.shape.capacity! - this.ids.length : Infinity;
  }

  get length(): number {
    return this.ids.length;
  }

  get tokens(): readonly number[] {
    return this.ids;
  }

  key(layer: number): Tensor {
    return this.keys[layer];
  }

  value(layer: number): Tensor {
    return this.values[layer];
  }

  /** Length of the longest common prefix of the cached tokens and `ids`. */
  commonPrefixLength(ids: readonly number[]): number {
    const n = Math.min(ids.length, this.ids.length);
    let i = 0;
    while (i < n && ids[i] === this.ids[i]) i++;
    return i;
  }

  /** Takes over the graph's present tensors after `newIds` were run on top of the cache. */
  update(newIds: readonly number[], presentKeys: Tensor[], presentValues: Tensor[]): void {
    if (this.shared) throw new Error('update on a shared cache: the graph writes it in place (appendInPlace)');
    const expect = this.ids.length + newIds.length;
    for (const t of [...presentKeys, ...presentValues]) {
      if (t.dims[2] !== expect) throw new Error(`KV cache: present has ${t.dims[2]} positions, expected ${expect}`);
    }
    this.disposeLayers();
    this.keys = presentKeys;
    this.values = presentValues;
    this.ids.push(...newIds);
  }

  /** Keeps only the first `n` positions (shared: just the length; else copying the kept slice). */
  rewind(n: number): void {
    if (n >= this.ids.length) return;
    if (this.shared) {
      this.ids.length = Math.max(0, n);
      return;
    }
    if (n <= 0) {
      this.clear();
      return;
    }
    const slice = (t: Tensor): Tensor => {
      const [, heads, p, d] = t.dims;
      const src = t.data as Float32Array;
      const out = new Float32Array(heads * n * d);
      for (let h = 0; h < heads; h++) out.set(src.subarray(h * p * d, h * p * d + n * d), h * n * d);
      return new Tensor('float32', out, [1, heads, n, d]);
    };
    const keys = this.keys.map(slice);
    const values = this.values.map(slice);
    this.disposeLayers();
    this.keys = keys;
    this.values = values;
    this.ids.length = n;
  }

  clear(): void {
    if (this.shared) {
      this.ids = [];
      return;
    }
    this.disposeLayers();
    this.keys = this.emptyLayers();
    this.values = this.emptyLayers();
    this.ids = [];
  }

  dispose(): void {
    this.ids = [];
    this.disposeLayers();
    this.keys = [];
    this.values = [];
  }

  /** Bytes held by keys and values. */
  get bytes(): number {
    return 2 * this.shape.nLayer * this.shape.nHead * this.shape.headDim * (this.shape.capacity ?? this.ids.length) * 4;
  }

  private emptyLayers(): Tensor[] {
    const { nLayer, nHead, headDim } = this.shape;
    const p = this.shape.capacity ?? 0;
    return Array.from({ length: nLayer }, () => new Tensor('float32', new Float32Array(nHead * p * headDim), [1, nHead, p, headDim]));
  }

  private disposeLayers(): void {
    for (const t of [...this.keys, ...this.values]) t.dispose();
  }
}
