// Stop rules: decide after each generated token whether generation ends and how much text is kept.
import type { StopReason, TrimInfo } from '../../../common/protocol';

export interface StopContext {
  prefix: string;
  suffix: string;
  maxTokens: number;
  maxTimeMs: number;
  startedAt: number;          // performance.now() when the request arrived
  confidenceCutoff: number;   // 0 = off
}

export interface StopDecision {
  reason: StopReason;
  /** How many characters of the generated text to keep. */
  keepChars: number;
  /** The rule the text cut off is reported under (the inspector's trims), for a stop that cuts written text as a trim. */
  trim?: TrimInfo['rule'];
}

export interface TokenStep {
  /** All generated text so far, including this token's text. */
  text: string;
  /** Length of the text before this token. */
  prevLength: number;
  prob: number;
  isStop: boolean;
  count: number;              // tokens generated so far, this one included
  now: number;
}

const OPENERS = '([{';
const CLOSERS = ')]}';

export class StopRules {
  readonly cursorIndent: number;
  readonly restOfLine: string;
  readonly singleLine: boolean;
  private readonly suffixLine: string | null;
  /** The text before the cursor on its line. */
  private readonly cursorLine: string;
  /** Nothing but spaces and tabs before the cursor on its line. */
  private readonly blankCursorLine: boolean;

  constructor(private readonly ctx: StopContext) {
    const line = ctx.prefix.slice(ctx.prefix.lastIndexOf('\n') + 1);
    this.cursorLine = line;
    this.blankCursorLine = line.trim() === '';
    this.cursorIndent = indentWidth(line.trim() === '' ? line : line.slice(0, line.length - line.trimStart().length));
    const nl = ctx.suffix.indexOf('\n');
    this.restOfLine = nl < 0 ? ctx.suffix : ctx.suffix.slice(0, nl);
    this.singleLine = this.restOfLine.trim() !== '';
    this.suffixLine = firstNonEmptyLine(ctx.suffix);
  }

  check(step: TokenStep): StopDecision | null {
    if (step.isStop) return { reason: 'eot', keepChars: step.prevLength };
    if (this.ctx.confidenceCutoff > 0 && step.prob < this.ctx.confidenceCutoff) {
      return { reason: 'low_confidence', keepChars: step.prevLength, trim: 'low_confidence' };
    }
    const text = step.text;
    if (this.singleLine) {
      const nl = text.indexOf('\n');
      if (nl >= 0) return { reason: 'single_line', keepChars: nl };
    }
    const dedent = this.dedentAt(text);
    if (dedent !== null) return { reason: 'dedent', keepChars: dedent };
    const bracket = this.unbalancedCloserAt(text);
    if (bracket !== null) return { reason: 'bracket_balance', keepChars: bracket };
    const repeat = this.suffixRepeatAt(text);
    if (repeat !== null) return { reason: 'suffix_repeat', keepChars: repeat };
    const loop = repeatingTailAt(text);
    if (loop !== null) return { reason: 'repetition', keepChars: loop };
    if (step.count >= this.ctx.maxTokens) return this.cutAtLimit('max_tokens', text);
    if (step.now - this.ctx.startedAt >= this.ctx.maxTimeMs) return this.cutAtLimit('max_time', text);
    return null;
  }

  /**
   * Where a completion cut short by a limit ends: a multi-line one at its last whole line (a
   * half-written last line such as `self.y =` is not code to insert, and the whole lines before it
   * still are); a single line, or a first line not finished yet, whole.
   */
  private cutAtLimit(reason: 'max_tokens' | 'max_time', text: string): StopDecision {
    const end = this.singleLine ? -1 : text.lastIndexOf('\n');
    if (end < 0 || text.slice(0, end).trim() === '') return { reason, keepChars: text.length };
    return { reason, keepChars: end, trim: 'unfinished_line' };
  }

  /**
   * Start of the first line after the first that has text and is indented less than the block the
   * completion is in (minus its newline). That block's indentation is the cursor's; on a line with
   * nothing but indentation before the cursor, the indentation the completion's first line reaches
   * (a model that writes a method body from column 0 is in the body: its closing line ends it).
   */
  private dedentAt(text: string): number | null {
    const indent = this.blockIndent(text);
    let start = text.indexOf('\n');
    while (start >= 0) {
      const next = text.indexOf('\n', start + 1);
      const line = text.slice(start + 1, next < 0 ? text.length : next);
      if (line.trim() !== '' && indentWidth(leading(line)) < indent) return start;
      start = next;
    }
    return null;
  }

  private blockIndent(text: string): number {
    if (!this.blankCursorLine) return this.cursorIndent;
    let start = 0;
    for (;;) {
      const end = text.indexOf('\n', start);
      const line = (start === 0 ? this.cursorLine : '') + text.slice(start, end < 0 ? text.length : end);
      if (line.trim() !== '') return Math.max(this.cursorIndent, indentWidth(leading(line)));
      if (end < 0) return this.cursorIndent;
      start = end + 1;
    }
  }

  /** Position of a closing bracket that closes something opened before the cursor, when the rest of the line supplies it. */
  private unbalancedCloserAt(text: string): number | null {
    const stack: string[] = [];
    const restTrim = this.restOfLine.trimStart();
    for (let i = 0; i < text.length; i++) {
      const ch = text[i];
      if (OPENERS.includes(ch)) stack.push(ch);
      else if (CLOSERS.includes(ch)) {
        if (stack.length > 0) stack.pop();
        else if (restTrim.startsWith(ch) && !text.slice(0, i).includes('\n')) return i;
      }
    }
    return null;
  }

  /**
   * Start of a generated line that repeats the suffix's first non-empty line (minus its newline); 0
   * when the cursor's line, blank before the cursor, becomes that line (the model went straight on
   * to rewrite the code after the cursor). Only a whole line (its newline written) counts: a line that
   * so far equals a short suffix line (` *` in a doc comment, `}`) may go on to be another one
   * (` * \`\`\``); a repeat that generation ends in is cut by postprocess's suffix overlap.
   */
  private suffixRepeatAt(text: string): number | null {
    const target = this.suffixLine;
    if (target === null) return null;
    if (this.blankCursorLine) {
      const nl = text.indexOf('\n');
      const first = this.cursorLine + (nl < 0 ? text : text.slice(0, nl));
      if (nl >= 0 && first.trim() !== '' && sameLine(first, target)) return 0;
    }
    let start = text.indexOf('\n');
    while (start >= 0) {
      const next = text.indexOf('\n', start + 1);
      const line = text.slice(start + 1, next < 0 ? text.length : next);
      if (next >= 0 && sameLine(line, target)) return start;
      start = next;
    }
    return null;
  }
}

/** Longest period a degenerate loop may have, and how often it must repeat to count. */
const MAX_PERIOD = 16;
const MIN_REPEATS = 4;
/** Longer units within one line (`.replace("-", "_")` × n) count after 3 copies. */
const MAX_LONG_PERIOD = 80;
const MIN_LONG_REPEATS = 3;

/**
 * Small models fall into loops (", 1, 1, 1, ..."). When the text ends with one unit of 1..16
 * characters repeated at least 4 times back to back, keep the text up to the end of the unit's
 * first occurrence: what came before the loop plus one copy of it. A unit of 17..80 characters
 * without a line break repeated at least 3 times (`.replace("-", "_")` × n) ends the text before
 * the line it started on.
 */
export function repeatingTailAt(text: string): number | null {
  for (let period = 1; period <= MAX_LONG_PERIOD; period++) {
    const repeats = period <= MAX_PERIOD ? MIN_REPEATS : MIN_LONG_REPEATS;
    if (period * repeats > text.length) continue;
    const unit = text.slice(text.length - period);
    if (unit.trim() === '') continue;              // runs of spaces or newlines are indentation, not loops
    if (period > MAX_PERIOD && unit.includes('\n')) continue; // repeated lines: postprocess's duplicate_line
    let start = text.length - period;
    while (start - period >= 0 && text.slice(start - period, start) === unit) start -= period;
    if ((text.length - start) / period < repeats) continue;
    // A long unit repeated within a line makes the whole line garbage, and the unit's copy ends at
    // whatever token boundary the loop was caught on: drop the line the loop started on.
    if (period > MAX_PERIOD) return Math.max(0, text.lastIndexOf('\n', start));
    return start + period;
  }
  return null;
}

/** Short lines like `}` only count as a repeat when their indentation matches too. */
function sameLine(line: string, target: string): boolean {
  if (target.trim().length >= 3) return line.trim() === target.trim();
  return line.trimEnd() === target.trimEnd();
}

function firstNonEmptyLine(text: string): string | null {
  for (const line of text.split('\n', 50)) if (line.trim() !== '') return line;
  return null;
}

function leading(line: string): string {
  return line.slice(0, line.length - line.trimStart().length);
}

/** Indentation width with tabs counted as 4 columns. */
export function indentWidth(ws: string): number {
  let w = 0;
  for (const ch of ws) w += ch === '\t' ? 4 : 1;
  return w;
}
