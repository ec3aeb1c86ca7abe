// The keys and values of one KV cache (kvCache.ts keeps its tokens), held where the session runs.
import { Tensor } from 'onnxruntime-node';
import { KvShape, sharedPositions } from './kvCache';

/**
 * Keys and values have layout [1, n_kv_head, P, head_dim] (P = the stored length, or the positions a
 * shared store's buffers hold). Shared: one buffer per layer the graph appends to in place, so only
 * `length` moves, grown (copied once) when a run needs more room (`reserve`). Otherwise: tensors of
 * exactly `length` positions, replaced by the graph's presents on every run.
 */
export class KvStore {
  private keys: Tensor[];
  private values: Tensor[];
  private stored = 0;
  /** Positions each shared buffer holds now. */
  private allocated: number;

  constructor(readonly shape: KvShape) {
    this.allocated = shape.capacity !== undefined ? sharedPositions(0, shape.capacity) : 0;
    this.keys = this.emptyLayers();
    this.values = this.emptyLayers();
  }

  /** Shared store: makes room for `n` positions in all (copying what is stored into bigger buffers if needed). */
  reserve(n: number): void {
    if (!this.shared) return;
    if (n > this.shape.capacity!) throw new Error(`KV cache full: ${n} positions exceed the model's ${this.shape.capacity}`);
    if (n <= this.allocated) return;
    const from = this.allocated;
    const to = sharedPositions(n, this.shape.capacity!);
    const { nHead, headDim: d } = this.shape;
    const grow = (t: Tensor): Tensor => {
      const src = t.data as Float32Array;
      const out = new Float32Array(nHead * to * d);
      for (let h = 0; h < nHead; h++) out.set(src.subarray(h * from * d, (h * from + this.stored) * d), h * to * d);
      return new Tensor('float32', out, [1, nHead, to, d]);
    };
    const keys = this.keys.map(grow);
    const values = this.values.map(grow);
    this.disposeLayers();
    this.keys = keys;
    this.values = values;
    this.allocated = to;
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
    this.disposeLayers();
    this.keys = [];
    this.values = [];
  }

  private emptyLayers(): Tensor[] {
    const { nLayer, nHead, headDim } = this.shape;
    const p = this.allocated;
    return Array.from({ length: nLayer }, () => new Tensor('float32', new Float32Array(nHead * p * headDim), [1, nHead, p, headDim]));
  }

  private disposeLayers(): void {
    for (const t of [...this.keys, ...this.values]) t.dispose();
  }
}
