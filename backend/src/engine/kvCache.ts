// The KV cache of one model as the engine sees it: which tokens it holds. Their keys and values live
// beside the InferenceSession, in the session's thread (kvStore.ts), and follow this record: a run
// tells the store how many cached positions to keep, so a rewind here costs nothing until then.
// It also keeps what the last request picked after its prompt (recordPicks), so that the next
// keystroke's request, whose prompt is that prompt plus what was typed, gets those picks back without
// running the model again (picksAfter; Generator.nextTokens).
import type { TokenRouting } from '../../../common/protocol';

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

/** One greedy pick, as the request that made it saw it. */
export interface PickRecord {
  id: number;
  prob: number;
  entropy: number;
  /** Routing of the run that fed it (a stop token is never fed: empty). */
  routing: TokenRouting;
  /** The healed text the pick still had to spell (token healing), null when nothing held it. */
  heal: string | null;
  isStop: boolean;
}

let nextId = 1;

/** `tokens[i]` is the token whose K/V sit at position i, so a new prompt can reuse the longest prefix it shares with `tokens`. */
export class KvCache {
  /** Names this cache's buffers in the session's thread. */
  readonly id = nextId++;
  private ids: number[] = [];
  /** picks[i] was picked greedily at position picksStart + i (a stop pick last, at `length`: never fed). */
  private picks: PickRecord[] = [];
  private picksStart = 0;
  /** The logits that predict position `at`, from the run that read a prompt of `at` tokens. */
  private promptRow: { at: number; logits: Float32Array } | null = null;
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
    this.dropPicksFrom(this.ids.length);   // a stop pick recorded at the end was never fed: its place is taken
    this.ids.push(...newIds);
  }

  /**
   * Takes back positions a rewind gave up whose keys and values are still in the shared buffer: the
   * tokens picksAfter returned, right after the prompt that precedes them (nothing ran there since).
   */
  reclaim(ids: readonly number[]): void {
    if (!this.shared) throw new Error('reclaim on a cache that is not shared: a rewind copied its tail away');
    this.ids.push(...ids);
  }

  /**
   * Keeps what a greedy request picked from position `start` on. Only picks the cache holds at their
   * positions are kept, and one more at the end that was never fed (a stop pick, or the last pick of a
   * request whose stop rules ended it before its run): Generator.nextTokens never takes that one back
   * into the cache, it feeds it.
   */
  recordPicks(start: number, picks: readonly PickRecord[]): void {
    const kept: PickRecord[] = [];
    for (const [i, p] of picks.entries()) {
      const at = start + i;
      if (at > this.ids.length || (at < this.ids.length && (p.isStop || this.ids[at] !== p.id))) break;
      kept.push(p);
      if (at === this.ids.length || p.isStop) break;
    }
    this.picks = kept;
    this.picksStart = start;
  }

  /**
   * The recorded picks that follow `promptIds` when the cache holds all of it and the last request's
   * picks continue it (it ends at or after where that request's prompt ended); else none.
   */
  picksAfter(promptIds: readonly number[]): PickRecord[] {
    const p = promptIds.length;
    if (!this.shared || p < this.picksStart || this.commonPrefixLength(promptIds) !== p) return [];
    return this.picks.slice(p - this.picksStart);
  }

  /** Keeps a copy of the logits that predict position `at` (the run that read a prompt of `at` tokens). */
  keepPromptLogits(at: number, row: Float32Array): void {
    this.promptRow = { at, logits: Float32Array.from(row) };
  }

  /** The kept logits that predict position `at`, when the cache still holds the tokens before it. */
  promptLogits(at: number): Float32Array | null {
    return this.promptRow && this.promptRow.at === at && at <= this.ids.length ? this.promptRow.logits : null;
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
    if (n >= this.ids.length) return;
    this.ids.length = Math.max(0, n);
    this.dropPicksFrom(this.ids.length);
    if (this.promptRow && this.promptRow.at > this.ids.length) this.promptRow = null;
  }

  clear(): void {
    this.ids = [];
    this.picks = [];
    this.promptRow = null;
  }

  /** The session that holds this cache's buffers registers how to free them (ModelSession.step). */
  onDispose(free: () => void): void {
    this.disposers.push(free);
  }

  dispose(): void {
    this.clear();
    for (const free of this.disposers.splice(0)) free();
  }

  private dropPicksFrom(position: number): void {
    if (this.picksStart + this.picks.length > position) this.picks.length = Math.max(0, position - this.picksStart);
  }

  /** Bytes held by keys and values. */
  get bytes(): number {
    return 2 * this.shape.nLayer * this.shape.nHead * this.shape.headDim * (this.shape.capacity ?? this.ids.length) * 4;
  }
}
