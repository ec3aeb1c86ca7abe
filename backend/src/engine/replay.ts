// Picks made once are not made again. After a keystroke the new prompt is most often the previous
// prompt (token healing takes the typed character's token back out) or that prompt plus some of what
// the previous request picked; greedy decoding from the same cached tokens picks the same tokens, so
// those picks come back from the cache's record (KvCache.recordPicks / picksAfter) instead of from
// model runs that would check them (history drafts: ~5 ms a token on two cores).
// Exact: the first pick is made again from real logits (the typed character changes what healing
// allows there), and a recorded pick after it is used only where this request's processors are the
// ones the recorded pick was made under (the same healed text left to spell, or none).
import type { GeneratedToken } from './generator';
import type { PickRecord } from './kvCache';
import { healRest } from './tokenHealing';

/** VFFN_REUSE_PICKS=0 turns the reuse off (the benchmark's A/B); on by default. */
export function reusePicks(): boolean {
  return process.env.VFFN_REUSE_PICKS !== '0';
}

/** What a greedy request picked, as the cache records it: each pick with the healed text it still had to spell. */
export function pickRecords(tok: { tokenText(id: number): string }, tokens: readonly GeneratedToken[], heal: string | null): PickRecord[] {
  const before: number[] = [];
  return tokens.map((t) => {
    const rec: PickRecord = { id: t.id, prob: t.prob, entropy: t.entropy, routing: t.routing, heal: healRest(tok, heal, before), isStop: t.isStop };
    before.push(t.id);
    return rec;
  });
}

/**
 * The recorded picks after this prompt that this request (healed text `heal`) would make the same way:
 * the first is always picked again, so it stays; each later one while the text left to heal before
 * it is the same as when it was recorded (usually none on either side after the first token).
 */
export function usablePicks(tok: { tokenText(id: number): string }, known: readonly PickRecord[], heal: string | null): PickRecord[] {
  const out = known.slice(0, 1);
  const before: number[] = [];
  for (let i = 1; i < known.length; i++) {
    before.push(known[i - 1].id);
    if (healRest(tok, heal, before) !== known[i].heal) break;
    out.push(known[i]);
  }
  return out;
}
