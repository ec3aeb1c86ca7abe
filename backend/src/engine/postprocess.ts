// Post-processing of a finished completion; every edit is recorded as a TrimInfo for the inspector.
import type { TrimInfo } from '../../../common/protocol';

export interface PostprocessContext {
  prefix: string;
  suffix: string;
}

export interface Postprocessed {
  text: string;
  trimmed: TrimInfo[];
}

/** Lines shorter than this (trimmed) are too common (`}`, `end`) to call duplicates. */
const MIN_DUPLICATE_LINE = 4;

export function postprocess(completion: string, ctx: PostprocessContext): Postprocessed {
  const trimmed: TrimInfo[] = [];
  let text = completion;
  const cut = (rule: TrimInfo['rule'], keep: number) => {
    if (keep >= text.length) return;
    trimmed.push({ rule, removedText: text.slice(keep) });
    text = text.slice(0, keep);
  };
  const nl = ctx.suffix.indexOf('\n');
  const restOfLine = nl < 0 ? ctx.suffix : ctx.suffix.slice(0, nl);

  if (restOfLine.trim() !== '' && text.trim() === restOfLine.trim()) cut('equals_rest_of_line', 0);
  if (restOfLine.trim() !== '' && text.trim() !== '' && clashesWithRestOfLine(text, ctx.prefix.slice(ctx.prefix.lastIndexOf('\n') + 1), restOfLine)) {
    cut('clashes_with_rest_of_line', 0);
  }
  cut('repeats_next_lines', repeatsNextLinesAt(text, ctx.suffix.slice(nl < 0 ? ctx.suffix.length : nl + 1)));
  cut('duplicate_line', duplicateLineAt(text, ctx.prefix));
  cut('suffix_overlap', text.length - suffixOverlap(text, ctx.suffix));
  cut('trailing_whitespace', text.trimEnd().length);
  return { text, trimmed };
}

/** A rewrite counts when the completion's first line and the rest of the line share this much of their start. */
const MIN_REWRITE_CHARS = 8;

/**
 * Code follows the cursor on its line and the completion would clash with it: the cursor sits in the
 * line's indentation (text there lands before the indentation), or the completion rewrites that code
 * (its first line starts like the rest of the line for at least 8 characters and half its length:
 * `while (i < n && ids[i] !== …) {` before `while (i < n && ids[i] === …) i++;`).
 */
export function clashesWithRestOfLine(text: string, cursorLine: string, restOfLine: string): boolean {
  if (cursorLine.trim() === '' && /^[ \t]/.test(restOfLine)) return true;
  const nl = text.indexOf('\n');
  const a = (nl < 0 ? text : text.slice(0, nl)).trim();
  const b = restOfLine.trim();
  let k = 0;
  while (k < a.length && k < b.length && a[k] === b[k]) k++;
  return k >= MIN_REWRITE_CHARS && k >= a.length / 2;
}

/** Length of the longest non-blank end of `text` that the suffix starts with. */
export function suffixOverlap(text: string, suffix: string): number {
  const max = Math.min(text.length, suffix.length, 512);
  for (let k = max; k > 0; k--) {
    const tail = text.slice(text.length - k);
    if (tail.trim() !== '' && suffix.startsWith(tail)) return k;
  }
  return 0;
}

/** Where the completion starts repeating the lines after the cursor's line (the newline before them). */
function repeatsNextLinesAt(text: string, nextLines: string): number {
  const next = nextLines.split('\n', 50).find((l) => l.trim() !== '');
  if (next === undefined || next.trim().length < MIN_DUPLICATE_LINE) return text.length;
  let start = text.indexOf('\n');
  while (start >= 0) {
    const end = text.indexOf('\n', start + 1);
    const line = text.slice(start + 1, end < 0 ? text.length : end);
    if (line.trim() === next.trim()) return start;
    start = end;
  }
  return text.length;
}

/**
 * Where a line repeats the line before it: the cursor's line completed by the text against the line
 * above it (then the whole completion goes), or two generated lines in a row.
 */
function duplicateLineAt(text: string, prefix: string): number {
  const lastNl = prefix.lastIndexOf('\n');
  const cursorLine = prefix.slice(lastNl + 1);
  const above = lastNl < 0 ? null : prefix.slice(prefix.lastIndexOf('\n', lastNl - 1) + 1, lastNl);
  const lines = (cursorLine + text).split('\n');
  let offset = -cursorLine.length; // start of lines[i] in `text`
  let previous = above;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    const t = line.trim();
    if (t.length >= MIN_DUPLICATE_LINE && previous !== null && t === previous.trim()) {
      return Math.max(0, i === 0 ? 0 : offset - 1);
    }
    if (t !== '') previous = line;
    offset += line.length + 1;
  }
  return text.length;
}
