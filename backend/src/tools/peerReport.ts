// The report of `npm run bench:peer`: what each engine's child process measured, summarized into one
// row per metric (ours, llama.cpp, ours/llama.cpp) and checked against issue 10's goals. Pure: no
// I/O, no timing, so it is unit-tested without either engine.
import { percentile } from '../engine/telemetry';
import type { PromptSource } from './peerPrompts';

/** One request as either child measured it. */
export interface RunTiming {
  /** From the request's start (tokenizing included) to the first generated token. */
  firstTokenMs: number;
  /** From the request's start to the last generated token (ours: the whole request, post-processing included). */
  totalMs: number;
  /** Running the prompt's tokens (not reused from the KV cache) through the model. */
  prefillMs: number;
  promptTokens: number;
  reusedTokens: number;
  generatedTokens: number;
  /** Per model step after the first token; null with fewer than two tokens. */
  decodeMsPerToken: number | null;
  /** Ours: generated tokens handed out from the previous request's picks with no model run (replay.ts). */
  replayedTokens?: number;
}

/** What one child process writes (same shape for both engines). */
export interface SideResult {
  engine: 'ours' | 'llama.cpp';
  label: string;
  versions: Record<string, string>;
  threads: number;
  loadAverageAtStart: number[];
  loadMs: number;
  rssAfterLoadBytes: number;
  /** VmHWM of the child at its end. */
  peakRssBytes: number;
  prefill: { promptTokens: number; runs: RunTiming[] }[];
  /**
   * Ours: the same cold prompts run again with drafting off (VFFN_DRAFT_TOKENS=0), so one model run per
   * generated token as llama.cpp does: decode speed apart from how well the text at hand lets drafts guess.
   */
  plainDecode?: { promptTokens: number; runs: RunTiming[] }[];
  /**
   * `continues` (ours writes it; the report reads ours' for both sides, whose samples are the same):
   * the typed character was the cold completion's first one, i.e. the user typed through the ghost text.
   * `editorKeystroke` (ours writes it; read for both sides): the first keystroke of the line typed on that
   * the extension's completion cache could not answer; 1 is the warm request itself, null: it answered
   * all it was asked. `editor`: that request's timing when it is not the warm one.
   */
  completions: { file: string; cold: RunTiming; warm: RunTiming; continues?: boolean; editorKeystroke?: number | null; editor?: RunTiming }[];
  notes: string[];
}

export interface Row {
  key: string;
  label: string;
  unit: string;
  ours: number | null;
  peer: number | null;
  /** ours / llama.cpp */
  ratio: number | null;
  goal: string;
  /** null: no goal for this row, or a value is missing. */
  met: boolean | null;
}

/** A goal on one row: ours at most/at least `ratio`× llama.cpp, and/or at most `maxValue` in the row's unit. */
export interface Goal {
  maxRatio?: number;
  minRatio?: number;
  maxValue?: number;
}

/** Issue 10, item 5: the goals against llama.cpp on the same machine, threads and prompts. */
export function goalsFor(prefillSizes: readonly number[]): Record<string, Goal> {
  const g: Record<string, Goal> = { warm_p50: { maxValue: 150, maxRatio: 0.5 }, warm_p95: { maxValue: 400, maxRatio: 0.5 }, rss_peak: { maxRatio: 0.8 } };
  for (const n of prefillSizes) {
    g[`prefill_tps_${n}`] = { minRatio: 1.5 };
    g[`decode_ms_${n}`] = { maxRatio: 0.5 };
  }
  return g;
}

export function median(xs: readonly number[]): number | null {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/** Nearest-rank percentile, as the backend's own telemetry and `npm run bench` compute it. */
export function pct(xs: readonly number[], p: number): number | null {
  return percentile([...xs].sort((a, b) => a - b), p);
}

export function ratio(ours: number | null, peer: number | null): number | null {
  if (ours === null || peer === null || peer === 0) return null;
  return ours / peer;
}

export function checkGoal(goal: Goal | undefined, ours: number | null, r: number | null): boolean | null {
  if (!goal) return null;
  if (ours === null || r === null) return null;
  if (goal.maxValue !== undefined && ours > goal.maxValue) return false;
  if (goal.maxRatio !== undefined && r > goal.maxRatio) return false;
  if (goal.minRatio !== undefined && r < goal.minRatio) return false;
  return true;
}

export function goalText(goal: Goal | undefined, unit: string): string {
  if (!goal) return '';
  const parts: string[] = [];
  if (goal.maxValue !== undefined) parts.push(`≤ ${goal.maxValue} ${unit}`);
  if (goal.maxRatio !== undefined) parts.push(`≤ ${goal.maxRatio}×`);
  if (goal.minRatio !== undefined) parts.push(`≥ ${goal.minRatio}×`);
  return parts.join(' and ');
}

interface MetricDef { key: string; label: string; unit: string; of: (s: SideResult) => number | null }

/**
 * `continues[i]`: sample i's typed character was its cold completion's first one; `editorKeys[i]`: its
 * first keystroke the editor's cache could not answer (SideResult.completions; both from ours).
 */
function metricDefs(prefillSizes: readonly number[], continues: readonly boolean[], editorKeys: readonly (number | null)[]): MetricDef[] {
  const defs: MetricDef[] = [];
  const runsOf = (s: SideResult, n: number) => s.prefill.find((p) => p.promptTokens === n)?.runs ?? [];
  const nums = (xs: (number | null)[]) => xs.filter((x): x is number => typeof x === 'number' && Number.isFinite(x));
  for (const n of prefillSizes) {
    defs.push(
      { key: `prefill_ms_${n}`, label: `cold prefill, ${n} prompt tokens (median)`, unit: 'ms', of: (s) => median(runsOf(s, n).map((r) => r.prefillMs)) },
      { key: `prefill_tps_${n}`, label: `cold prefill speed, ${n} tokens`, unit: 'tok/s', of: (s) => {
        const m = median(runsOf(s, n).map((r) => r.prefillMs));
        return m === null || m <= 0 ? null : (n / m) * 1000;
      } },
      { key: `ttft_${n}`, label: `time to first token, cold ${n}-token prompt (median)`, unit: 'ms', of: (s) => median(runsOf(s, n).map((r) => r.firstTokenMs)) },
      { key: `decode_ms_${n}`, label: `decode per token after ${n} tokens (median)`, unit: 'ms', of: (s) => median(nums(runsOf(s, n).map((r) => r.decodeMsPerToken))) },
      // llama.cpp drafts nothing: its own decode rows are already one run per token.
      { key: `decode_plain_ms_${n}`, label: `decode per token after ${n} tokens, one model run per token (ours: drafts off) (median)`, unit: 'ms', of: (s) => {
        const runs = s.engine === 'ours' ? s.plainDecode?.find((p) => p.promptTokens === n)?.runs ?? [] : runsOf(s, n);
        return median(nums(runs.map((r) => r.decodeMsPerToken)));
      } },
    );
  }
  const c = (s: SideResult, which: 'cold' | 'warm', f: (r: RunTiming) => number) => s.completions.map((x) => f(x[which]));
  for (const [which, name] of [['warm', 'warm single-line completion (one more character typed)'], ['cold', 'cold single-line completion (empty KV cache)']] as const) {
    for (const p of [50, 95]) {
      defs.push({ key: `${which}_p${p}`, label: `${name}, p${p}`, unit: 'ms', of: (s) => pct(c(s, which, (r) => r.totalMs), p) });
    }
    for (const p of [50, 95]) {
      defs.push({ key: `${which}_ttft_p${p}`, label: `${which} time to first token, p${p}`, unit: 'ms', of: (s) => pct(c(s, which, (r) => r.firstTokenMs), p) });
    }
  }
  // The warm requests split by what was typed. In the editor a character that continues the ghost text
  // is answered by the extension's own cache before any request (so is llama.vscode's): the requests
  // that reach an engine there are the ones whose character departs from it.
  const warmWhere = (s: SideResult, cont: boolean) => s.completions.filter((_, i) => (continues[i] ?? false) === cont).map((x) => x.warm.totalMs);
  const nCont = continues.filter(Boolean).length;
  for (const [cont, name] of [[true, `typed through the previous completion (${nCont} of ${continues.length})`],
    [false, `typed something else (${continues.length - nCont} of ${continues.length})`]] as const) {
    for (const p of [50, 95]) {
      defs.push({ key: `warm_${cont ? 'through' : 'other'}_p${p}`, label: `warm, ${name}, p${p}`, unit: 'ms', of: (s) => pct(warmWhere(s, cont), p) });
    }
  }
  // The request an editor sends: typing the line on, the first keystroke its completion cache cannot answer.
  const editor = (s: SideResult) => s.completions
    .map((x, i) => (editorKeys[i] === 1 ? x.warm : editorKeys[i] ? x.editor : undefined)?.totalMs)
    .filter((x): x is number => typeof x === 'number');
  const nEditor = editorKeys.filter((k) => k !== null).length;
  for (const p of [50, 95]) {
    defs.push({ key: `editor_p${p}`, label: `warm, the first keystroke the editor's cache cannot answer (${nEditor} of ${editorKeys.length}), p${p}`, unit: 'ms', of: (s) => pct(editor(s), p) });
  }
  defs.push(
    { key: 'warm_replayed', label: 'warm: generated tokens handed out from the previous picks, in all', unit: 'tokens', of: (s) => {
      const xs = s.completions.map((x) => x.warm.replayedTokens);
      return xs.every((x) => x === undefined) ? null : xs.reduce<number>((a, x) => a + (x ?? 0), 0);
    } },
    { key: 'warm_generated', label: 'warm: generated tokens, in all', unit: 'tokens', of: (s) => s.completions.reduce((a, x) => a + x.warm.generatedTokens, 0) },
    { key: 'warm_tokens_run_p50', label: 'warm: prompt tokens run (not reused), p50', unit: 'tokens', of: (s) => pct(c(s, 'warm', (r) => r.promptTokens - r.reusedTokens), 50) },
    { key: 'rss_load', label: 'RSS after load', unit: 'MB', of: (s) => s.rssAfterLoadBytes / 2 ** 20 },
    { key: 'rss_peak', label: 'peak RSS (VmHWM)', unit: 'MB', of: (s) => s.peakRssBytes / 2 ** 20 },
  );
  return defs;
}

/** One row per metric: ours, llama.cpp, the ratio, the goal and whether it is met. */
export function compareSides(ours: SideResult, peer: SideResult, prefillSizes: readonly number[]): Row[] {
  const goals = goalsFor(prefillSizes);
  const defs = metricDefs(prefillSizes, ours.completions.map((c) => c.continues ?? false), ours.completions.map((c) => c.editorKeystroke ?? null));
  return defs.map((d) => {
    const o = d.of(ours);
    const p = d.of(peer);
    const r = ratio(o, p);
    return { key: d.key, label: d.label, unit: d.unit, ours: o, peer: p, ratio: r, goal: goalText(goals[d.key], d.unit), met: checkGoal(goals[d.key], o, r) };
  });
}

export function fmt(x: number | null, unit = ''): string {
  if (x === null || !Number.isFinite(x)) return '–';
  const digits = unit === 'tokens' ? 0 : Math.abs(x) >= 100 ? 0 : 1;
  return x.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

export function fmtRatio(r: number | null): string {
  return r === null || !Number.isFinite(r) ? '–' : `${r.toFixed(2)}×`;
}

export function metText(met: boolean | null): string {
  return met === null ? '' : met ? 'met' : '**missed**';
}

export interface PeerReport {
  date: string;
  machine: string;
  loadAverageAtStart: number[];
  /** Percent of all CPUs' time busy in the 2 s before the start (other work on a shared machine). */
  cpuBusyAtStart: number | null;
  command: string;
  settings: Record<string, unknown>;
  prompts: { prefill: { promptTokens: number; sources: PromptSource[] }[]; completions: number; sampleFiles: string[] };
  versions: Record<string, string>;
  ours: SideResult;
  peer: SideResult;
  rows: Row[];
  goals: { met: number; missed: number; unknown: number };
}

export function goalCounts(rows: readonly Row[]): PeerReport['goals'] {
  const withGoal = rows.filter((r) => r.goal !== '');
  return {
    met: withGoal.filter((r) => r.met === true).length,
    missed: withGoal.filter((r) => r.met === false).length,
    unknown: withGoal.filter((r) => r.met === null).length,
  };
}

/** Where the cold prompts were cut, each place once (every size's run i is at the same place). */
function promptPlaces(prefill: PeerReport['prompts']['prefill']): string {
  const places = [...new Set((prefill[0]?.sources ?? []).map((s) => `${s.file}:${s.line}`))];
  return places.length ? places.join(', ') : '–';
}

export function toMarkdown(r: PeerReport): string {
  const mb = (b: number) => `${(b / 2 ** 20).toFixed(0)} MB`;
  const lines = [
    `# Side-by-side: our backend vs llama.cpp, ${r.date}`,
    '',
    `Machine: ${r.machine}; load average ${r.loadAverageAtStart.join(' ')} at start`
      + `${r.cpuBusyAtStart === null ? '' : `, CPUs ${r.cpuBusyAtStart}% busy in the 2 s before it`} `
      + `(ours ${r.ours.loadAverageAtStart.join(' ')}, llama.cpp ${r.peer.loadAverageAtStart.join(' ')} when each began). `
      + `Each engine ran alone in its own child process, one after the other, ${r.ours.threads} threads each.`,
    '',
    `- ours: ${r.ours.label}`,
    `- llama.cpp: ${r.peer.label}`,
    `- versions: ${Object.entries(r.versions).map(([k, v]) => `${k} ${v}`).join(', ')}`,
    `- command: \`${r.command}\``,
    `- prompts: cold prefill of exactly ${r.prompts.prefill.map((p) => p.promptTokens).join(' and ')} tokens `
      + `(FIM at ${promptPlaces(r.prompts.prefill)}, the same ids on both sides, `
      + `${r.settings.prefillRuns} runs each, KV cache cleared before each); ${r.prompts.completions} single-line completions in real source files `
      + '(cold with the cursor mid-line and the rest of that line not written yet, then its next character typed: warm, KV cache reused; '
      + 'split below by whether that character continued the cold completion; then the line typed on, the extension\'s completion cache '
      + 'asked first, to the first keystroke it cannot answer, whose request both sides run after the warm one)',
    '',
    '| metric | ours | llama.cpp | ours / llama.cpp | goal | |',
    '|---|---|---|---|---|---|',
  ];
  for (const row of r.rows) {
    lines.push(`| ${row.label} (${row.unit}) | ${fmt(row.ours, row.unit)} | ${fmt(row.peer, row.unit)} | ${fmtRatio(row.ratio)} | ${row.goal} | ${metText(row.met)} |`);
  }
  lines.push('', `Goals: ${r.goals.met} met, ${r.goals.missed} missed${r.goals.unknown ? `, ${r.goals.unknown} not measured` : ''}.`,
    `Load: ours ${(r.ours.loadMs / 1000).toFixed(1)} s, RSS ${mb(r.ours.rssAfterLoadBytes)}; llama.cpp ${(r.peer.loadMs / 1000).toFixed(1)} s, RSS ${mb(r.peer.rssAfterLoadBytes)}.`, '');
  const notes = [...r.ours.notes.map((n) => `ours: ${n}`), ...r.peer.notes.map((n) => `llama.cpp: ${n}`)];
  if (notes.length) lines.push('Notes:', '', ...notes.map((n) => `- ${n}`), '');
  return `${lines.join('\n')}\n`;
}
