// The KV cache of one model: which tokens it holds and their keys/values per layer.
import { Tensor } from 'onnxruntime-node';

export interface KvShape {
  nLayer: number;
  /** Heads of the cache: the model's KV heads (n_kv_head with grouped-query attention, else n_head). */
  nHead: number;
  headDim: number;
}

/**
 * Keys and values have layout [1, n_kv_head, P, head_dim]. `tokens[i]` is the token whose K/V sit at
 * position i, so a new prompt can reuse the longest prefix it shares with `tokens`.
 */
export class KvCache {
  private keys: Tensor[];
  private values: Tensor[];
  private ids: number[] = [];

  constructor(readonly shape: KvShape) {
    this.keys = this.emptyLayers();
    this.values = this.emptyLayers();
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
    const expect = this.ids.length + newIds.length;
    for (const t of [...presentKeys, ...presentValues]) {
      if (t.dims[2] !== expect) throw new Error(`KV cache: present has ${t.dims[2]} positions, expected ${expect}`);
    }
    this.disposeLayers();
    this.keys = presentKeys;
    this.values = presentValues;
    this.ids.push(...newIds);
  }

  /** Keeps only the first `n` positions (copying the kept slice; CPU tensors). */
  rewind(n: number): void {
    if (n >= this.ids.length) return;
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
    this.disposeLayers();
    this.keys = this.emptyLayers();
    this.values = this.emptyLayers();
    this.ids = [];
  }

  dispose(): void {
    this.clear();
  }

  /** Bytes held by keys and values. */
  get bytes(): number {
    return 2 * this.shape.nLayer * this.shape.nHead * this.shape.headDim * this.ids.length * 4;
  }

  private emptyLayers(): Tensor[] {
    const { nLayer, nHead, headDim } = this.shape;
    return Array.from({ length: nLayer }, () => new Tensor('float32', new Float32Array(0), [1, nHead, 0, headDim]));
  }

  private disposeLayers(): void {
    for (const t of [...this.keys, ...this.values]) t.dispose();
  }
}
