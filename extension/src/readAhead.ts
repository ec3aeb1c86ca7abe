// How the idle prefill (completion/prefill.ts) reads in the status bar: the backend reads the
// prompt at a resting cursor on both cores, which a user should be able to see and explain (the fan,
// or the first keystroke's fast answer). Free of vscode, so that plain Node tests can read it.
import type { PrefillResult } from '../../common/protocol';

/** A prefill answered within this long (its prompt was cached) is never shown as reading: no flicker. */
export const SHOW_READING_AFTER_MS = 250;

/** The status bar's icon and text tail while a prefill runs. */
export const READING_ICON = '$(eye)';
export const READING_TEXT = 'reading ahead';

/** The tooltip's line on the last prefill that ran prompt tokens; null when there is none to tell. */
export function readAheadLine(last: PrefillResult | null): string | null {
  if (!last || last.readTokens <= 0) return null;
  const seconds = (last.prefillMs / 1000).toFixed(1);
  const cached = last.reusedTokens > 0 ? `, ${last.reusedTokens.toLocaleString('en-US')} were cached already` : '';
  const how = last.state === 'read'
    ? `read ${last.readTokens.toLocaleString('en-US')} of its ${last.promptTokens.toLocaleString('en-US')} prompt tokens in ${seconds} s${cached}`
    : `read ${last.readTokens.toLocaleString('en-US')} of its ${last.promptTokens.toLocaleString('en-US')} prompt tokens in ${seconds} s before a newer request stopped it (kept)`;
  return `While the cursor rested, the model ${how}, so the first keystroke there answers from the cache ` +
    '(setting versatileffn.prefillOnRest).';
}
