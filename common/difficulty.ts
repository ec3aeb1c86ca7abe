// How hard a token was for the model: its mean loop count over the layers (1 = easy,
// 4 = every layer ran all loops). Shared by the webview and the editor tint; no imports.

export function meanLoops(loops: readonly number[]): number {
  if (loops.length === 0) return 1;
  let sum = 0;
  for (const l of loops) sum += l;
  return sum / loops.length;
}

/** 1..4, the bucket a token's colour comes from. */
export function difficultyBucket(loops: readonly number[]): 1 | 2 | 3 | 4 {
  const m = meanLoops(loops);
  if (m < 1.75) return 1;
  if (m < 2.5) return 2;
  if (m < 3.25) return 3;
  return 4;
}

/** Mean share of FFN hidden units a token used over the layers (upcycled models), or null when not reported. */
export function meanFfnShare(share: readonly number[] | undefined): number | null {
  if (!share || share.length === 0) return null;
  let sum = 0;
  for (const x of share) sum += x;
  return sum / share.length;
}
