// Several KV caches per model, so that going back to a place finds its prompt still cached: another
// file and back, a jump to a definition and back (VS Code puts the cursor where it was). With SPM
// prompts the suffix comes first, so a place on another line shares almost nothing with the last one
// and a single cache would be overwritten by every move. Each slot holds one place's prompt (and the
// completion after it); a new place takes the slot used longest ago.
import { KvCache, type KvShape } from './kvCache';

/** Two places: the one being written and the one before it (each slot of the 0.5B model is 24 MB once used). */
export const DEFAULT_KV_SLOTS = 2;

/** VFFN_KV_SLOTS (1–8) overrides the default. */
export function kvSlotCount(): number {
  const v = Number(process.env.VFFN_KV_SLOTS);
  return Number.isInteger(v) && v >= 1 && v <= 8 ? v : DEFAULT_KV_SLOTS;
}

export class KvSlots {
  private readonly slots: KvCache[];
  private readonly usedAt: number[];
  private clock = 0;

  constructor(shape: KvShape, count = kvSlotCount()) {
    this.slots = Array.from({ length: Math.max(1, count) }, () => new KvCache(shape));
    this.usedAt = this.slots.map(() => 0);
  }

  get all(): readonly KvCache[] {
    return this.slots;
  }

  /**
   * The cache a prompt runs on: of the slots it can use without losing another place (one holding only
   * a start of this prompt, e.g. a prefill cut short, or an empty one) or that already hold at least half
   * of it (typing on at a place), the one holding the longest start; otherwise the one used longest ago
   * (a new place), so the place before stays cached.
   */
  pick(ids: readonly number[]): KvCache {
    let best = -1;
    let bestCommon = -1;
    this.slots.forEach((slot, i) => {
      const common = slot.commonPrefixLength(ids);
      const usable = common === slot.length || (ids.length > 0 && common * 2 >= ids.length);
      if (usable && common > bestCommon) {
        best = i;
        bestCommon = common;
      }
    });
    return this.use(best >= 0 ? best : this.oldest());
  }

  /** The cache used longest ago, for a run that rewrites it from the start (analysis of a selection). */
  spare(): KvCache {
    return this.use(this.oldest());
  }

  clear(): void {
    for (const c of this.slots) c.clear();
  }

  dispose(): void {
    for (const c of this.slots) c.dispose();
  }

  private oldest(): number {
    let i = 0;
    for (let j = 1; j < this.slots.length; j++) if (this.usedAt[j] < this.usedAt[i]) i = j;
    return i;
  }

  private use(i: number): KvCache {
    this.usedAt[i] = ++this.clock;
    return this.slots[i];
  }
}
