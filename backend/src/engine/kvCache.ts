// The KV cache of one model as the engine sees it: which tokens it holds. Their keys and values live
// beside the InferenceSession, in the session's thread (kvStore.ts), and follow this record: a run
// tells the store how many cached positions to keep, so a rewind here costs nothing until then.

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

let nextId = 1;

/** `tokens[i]` is the token whose K/V sit at position i, so a new prompt can reuse the longest prefix it shares with `tokens`. */
export class KvCache {
  /** Names this cache's buffers in the session's thread. */
  readonly id = nextId++;
  private ids: number[] = [];
  private readonly disposers: (() => void)[] = [];

  constructor(readonly shape: KvShape) {}

  /** A fixed-capacity cache that the graph updates in place (KvShape.capacity). */
  get shared(): boolean {
    return this.shape.capacity !== undefined;
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

  /** Records that a run wrote `newIds`' keys and values after the cached ones. */
  append(newIds: readonly number[]): void {
    this.ids.push(...newIds);
  }

  /** Length of the longest common prefix of the cached tokens and `ids`. */
  commonPrefixLength(ids: readonly number[]): number {
    const n = Math.min(ids.length, this.ids.length);
    let i = 0;
    while (i < n && ids[i] === this.ids[i]) i++;
    return i;
  }

  /** Keeps only the first `n` positions (the store drops the rest at its next run). */
  rewind(n: number): void {
    if (n < this.ids.length) this.ids.length = Math.max(0, n);
  }

  clear(): void {
    this.ids = [];
  }

  /** The session that holds this cache's buffers registers how to free them (ModelSession.step). */
  onDispose(free: () => void): void {
    this.disposers.push(free);
  }

  dispose(): void {
    this.ids = [];
    for (const free of this.disposers.splice(0)) free();
  }

  /** Bytes held by keys and values. */
  get bytes(): number {
    return 2 * this.shape.nLayer * this.shape.nHead * this.shape.headDim * (this.shape.capacity ?? this.ids.length) * 4;
  }
}
