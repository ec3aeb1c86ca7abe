// Decisions about the shape of a completion that depend only on the text around the cursor.
import type { MultilineMode } from '../config';

/**
 * Single line when real code follows the cursor on its line (closing brackets, quotes and
 * punctuation do not count); multi-line at the end of a line. `never`/`always` override.
 */
export function wantsMultiline(linePrefix: string, lineSuffix: string, mode: MultilineMode): boolean {
  if (mode === 'never') return false;
  if (mode === 'always') return true;
  return /^[\s)\]}>"'`;,.]*$/.test(lineSuffix);
}

/** Cuts a completion to its first line when only one line is wanted. */
export function shapeCompletion(text: string, multiline: boolean): string {
  if (multiline) return text;
  const newline = text.indexOf('\n');
  return newline < 0 ? text : text.slice(0, newline);
}

/** True when there is nothing worth showing (empty or only whitespace). */
export function isBlank(text: string): boolean {
  return text.trim().length === 0;
}
