// How a model load in progress reads in the status bar and the inspector. Free of vscode, so that
// plain Node tests can read it.
import type { StatusParams } from '../../common/protocol';

/** Status bar text and tooltip for a status that carries a load in progress; null when it carries none. */
export function describeLoading(s: StatusParams | null): { text: string; tooltip: string } | null {
  const l = s?.loading;
  if (!s || !l) return null;
  const seconds = Math.floor(l.elapsedMs / 1000);
  // During a hot swap the old model keeps answering: name it first.
  const serving = s.model && s.model !== l.model ? s.model : null;
  const text = `VFFN $(sync~spin) ${serving ? `${serving} → ` : 'loading '}${l.model} · ${l.step} · ${seconds} s`;
  const meanwhile = serving
    ? ` ${serving}${s.provider ? ` on ${s.provider}` : ''} keeps answering until it is ready.`
    : s.model === l.model ? ` It keeps answering${s.provider ? ` on ${s.provider}` : ''} meanwhile.` : '';
  return { text, tooltip: `Loading ${l.model}: ${l.step} (${seconds} s).${meanwhile}` };
}
