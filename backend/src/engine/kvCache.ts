// The KV cache of one model as the engine sees it: which tokens it holds. Their keys and values live
// beside the InferenceSession, in the session's thread (kvStore.ts), and follow this record: a run
// tells the store how many cached positions to keep, so a rewind here costs nothing until then.

export interface KvShape {
  nLayer: number;
  /** Heads of the cache: the model's KV heads (n_kv_head with grouped-query attention, else n_head). */
  nHead: number;
  headDim: number;
  /**
   * Set for graphs with kv "shared" (FORMAT.md): the cache holds at most this many positions, in one
   * buffer per layer that the graph writes new keys/values into in place, so appending and rewinding
   * do not copy it; the buffer grows in steps (sharedPositions). Unset: tensors of exactly the cached
   * length, replaced on every step.
   */
  capacity?: number;
}

/** A shared cache's buffers grow in steps of this many positions. */
export const KV_GROW_POSITIONS = 256;

/**
 * Positions a shared cache's buffers hold for `n` cached tokens: `n` rounded up to a step, at most the
 * capacity. Not always the capacity: onnxruntime-node copies every bound present out on each run, so
 * that copy (and the garbage it leaves) follows the buffer's size. Measured with the default model,
 * decode after 250 tokens, 384 vs 1,024 positions: 39.5–46.8 vs 45.1–52.1 ms per step (3 interleaved
 * pairs, docs/SPEED.md).
 */
export function sharedPositions(n: number, capacity: number): number {
  return Math.min(capacity, Math.max(KV_GROW_POSITIONS, Math.ceil(n / KV_GROW_POSITIONS) * KV_GROW_POSITIONS));
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

  /** Bytes held by keys and values (a shared cache: its buffers, grown to hold the cached tokens). */
  get bytes(): number {
    const positions = this.shared ? sharedPositions(this.ids.length, this.shape.capacity!) : this.ids.length;
    return 2 * this.shape.nLayer * this.shape.nHead * this.shape.headDim * positions * 4;
  }
}
