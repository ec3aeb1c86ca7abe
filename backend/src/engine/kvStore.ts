// The keys and values of one KV cache (kvCache.ts keeps its tokens), held where the session runs.
import { Tensor } from 'onnxruntime-node';
import type { KvShape } from './kvCache';

/**
 * Keys and values have layout [1, n_kv_head, P, head_dim] (P = the stored length, or the capacity of a
 * shared cache). Shared: one buffer per layer the graph appends to in place, so only `length` moves.
 * Otherwise: tensors of exactly `length` positions, replaced by the graph's presents on every run.
 */
export class KvStore {
  private keys: Tensor[];
  private values: Tensor[];
  private stored = 0;
  /** Shared: positions the graph has written since the buffers were made (a rewind does not erase them). */
  private written = 0;

  constructor(readonly shape: KvShape) {
    this.keys = this.emptyLayers();
    this.values = this.emptyLayers();
  }

  get shared(): boolean {
    return this.shape.capacity !== undefined;
  }

  get length(): number {
    return this.stored;
  }

  key(layer: number): Tensor {
    return this.keys[layer];
  }

  value(layer: number): Tensor {
    return this.values[layer];
  }

  /** Shared store: the graph wrote `n` new positions after the stored ones. */
  appendInPlace(n: number): void {
    if (!this.shared) throw new Error('appendInPlace on a store that is not shared');
    this.stored += n;
    this.written = Math.max(this.written, this.stored);
  }

  /**
   * Shared: takes back positions a rewind gave up, which still hold what the graph wrote there (the
   * engine's KvCache.reclaim knows which tokens those were). False when the store cannot.
   */
  regrow(n: number): boolean {
    if (!this.shared || n > this.written) return false;
    this.stored = Math.max(this.stored, n);
    return true;
  }

  /** Takes over the graph's present tensors after `n` new tokens ran on top of the store. */
  update(n: number, presentKeys: Tensor[], presentValues: Tensor[]): void {
    if (this.shared) throw new Error('update on a shared store: the graph writes it in place (appendInPlace)');
    const expect = this.stored + n;
    for (const t of [...presentKeys, ...presentValues]) {
      if (t.dims[2] !== expect) throw new Error(`KV cache: present has ${t.dims[2]} positions, expected ${expect}`);
    }
    this.disposeLayers();
    this.keys = presentKeys;
    this.values = presentValues;
    this.stored = expect;
  }

  /** Keeps only the first `n` positions (shared: just the length; else copying the kept slice). */
  rewind(n: number): void {
    if (n >= this.stored) return;
    if (this.shared) {
      this.stored = Math.max(0, n);
      return;
    }
    if (n <= 0) {
      this.disposeLayers();
      this.keys = this.emptyLayers();
      this.values = this.emptyLayers();
      this.stored = 0;
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
    this.stored = n;
  }

  dispose(): void {
    this.stored = 0;
    this.written = 0;
    this.disposeLayers();
    this.keys = [];
    this.values = [];
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
