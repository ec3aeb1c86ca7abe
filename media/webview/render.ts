// Renders one inspected run (a completion or an analysis): tokens coloured by difficulty,
// the tokens × layers heat map of ℓ, compute, the stage timeline and why it stopped.
// Stable data-testid attributes are part of the e2e tests' contract.
import type { TokenInfo } from '../../common/protocol';
import { difficultyBucket, meanFfnShare, meanLoops } from '../../common/difficulty';
import { decodeTokensPerSecond } from '../../common/vocabulary';
import type { BackendModelStats, InspectedRun, UsageSummary } from '../../common/webview';
import { el, ms, pct, roving, visible } from './dom';

const STOP_TEXT: Record<string, string> = {
  eot: 'the model ended the completion (end of text)',
  max_tokens: 'it reached the token limit',
  max_time: 'it reached the time limit',
  dedent: 'a line was indented less than the cursor',
  single_line: 'one line was wanted (code follows the cursor)',
  bracket_balance: 'the brackets balanced',
  suffix_repeat: 'the output started repeating the code after the cursor',
  repetition: 'the output fell into a loop (the same text over and over)',
  low_confidence: 'a token fell below the confidence cut-off',
  cancelled: 'the request was cancelled',
  superseded: 'a newer request replaced it',
  error: 'the backend reported an error',
  empty_input: 'there was nothing to complete',
};

const TRIM_TEXT: Record<string, string> = {
  suffix_overlap: 'overlap with the code after the cursor',
  duplicate_line: 'a line duplicating existing code',
  equals_rest_of_line: 'text equal to the rest of the line',
  clashes_with_rest_of_line: 'text that would clash with the code after the cursor on its line',
  repeats_next_lines: 'lines repeating the next lines',
  low_confidence: 'low-confidence tail',
  unfinished_line: 'a last line the limit cut off half-written',
  trailing_whitespace: 'trailing whitespace',
};

export function renderRun(run: InspectedRun): HTMLElement {
  const title = run.source === 'analysis' ? 'Analyzed selection' : run.source === 'compare' ? run.model : run.accepted ? 'Accepted completion' : 'Latest completion';
  const section = el('section', { class: 'run', 'data-testid': 'run', 'data-run-id': run.id, 'data-source': run.source, 'data-accepted': String(run.accepted), 'aria-label': `${title}, model ${run.model}` },
    el('h2', {}, title, el('span', { class: 'muted', 'data-testid': 'run-model' }, ` ${run.model}${run.provider ? ` · ${run.provider}` : ''}`)),
  );
  if (run.repaired > 0) section.append(el('p', { class: 'muted', 'data-testid': 'repaired' }, `${run.repaired} value(s) from the backend were not numbers and are shown as 0.`));
  if (run.error) section.append(el('p', { class: 'error', role: 'alert', 'data-testid': 'run-error' }, `Error: ${run.error}`));
  if (run.source !== 'analysis') section.append(renderStop(run));
  const detail = el('div', { class: 'detail', 'data-testid': 'token-detail', 'aria-live': 'polite' }, 'Hover or focus a token or a cell for its routing.');
  section.append(
    renderTokens(run.tokens, detail),
    detail,
    renderCompute(run),
    renderHeatmap(run.tokens, detail),
    renderTimeline(run),
  );
  return section;
}

function renderStop(run: InspectedRun): HTMLElement {
  const box = el('div', { class: 'stop', 'data-testid': 'stop-reason', 'data-stop': run.stopReason ?? '' });
  const why = run.stopReason ? STOP_TEXT[run.stopReason] ?? run.stopReason : 'unknown';
  box.append(el('p', {}, el('strong', {}, 'Stopped: '), why));
  if (run.text.length === 0 && !run.error) {
    box.append(el('p', { class: 'muted' }, 'No completion was shown: nothing was left after post-processing.'));
  }
  for (const t of run.trimmed) {
    box.append(el('p', { 'data-testid': 'trim' }, el('strong', {}, 'Trimmed: '), `${TRIM_TEXT[t.rule] ?? t.rule} `, el('code', {}, visible(t.removedText.slice(0, 120)))));
  }
  return box;
}

function tokenLabel(t: TokenInfo, i: number): string {
  const share = meanFfnShare(t.routing.ffnShare);
  return `Token ${i + 1} "${visible(t.text)}": mean loops ${meanLoops(t.routing.loops).toFixed(2)}, confidence ${pct(t.prob)}, compute ${t.computeVsDense.toFixed(2)}× dense`
    + (share === null ? '' : `, FFN units used ${pct(share)}`);
}

function renderTokens(tokens: TokenInfo[], detail: HTMLElement): HTMLElement {
  const box = el('div', { class: 'tokens', 'data-testid': 'tokens', role: 'list', 'aria-label': 'Tokens coloured by difficulty (mean loops)' });
  if (tokens.length === 0) {
    box.append(el('span', { class: 'muted' }, 'No tokens.'));
    return box;
  }
  const items = tokens.map((t, i) => {
    const span = el('span', {
      class: `token lv-${difficultyBucket(t.routing.loops)}`,
      role: 'listitem',
      'data-testid': 'token',
      'data-index': String(i),
      'data-mean-loops': meanLoops(t.routing.loops).toFixed(2),
      'aria-label': tokenLabel(t, i),
    }, visible(t.text));
    span.style.setProperty('--conf', String(Math.max(0, Math.min(1, t.prob))));
    const show = (): void => showToken(detail, t, i);
    span.addEventListener('mouseenter', show);
    span.addEventListener('focus', show);
    return span;
  });
  box.append(...items);
  roving(box, items, 1);
  return box;
}

function showToken(detail: HTMLElement, t: TokenInfo, i: number): void {
  const r = t.routing;
  detail.replaceChildren(
    el('p', {}, el('strong', {}, `Token ${i + 1} `), el('code', {}, visible(t.text)), ` id ${t.id}`),
    el('p', {}, `confidence ${pct(t.prob)} · entropy ${t.entropy.toFixed(2)} nats · mean loops ${meanLoops(r.loops).toFixed(2)}`),
    el('p', {}, `compute ${t.computeVsDense.toFixed(2)}× dense · ${pct(t.computeVsMax)} of always running all loops`),
    el('p', { class: 'muted' }, `ℓ per layer: ${r.loops.join(' ')}`),
  );
  const share = meanFfnShare(r.ffnShare);
  if (share !== null) detail.append(el('p', { class: 'muted', 'data-testid': 'ffn-share' }, `FFN units used: ${pct(share)} (mean over layers)`));
}

function showCell(detail: HTMLElement, t: TokenInfo, i: number, layer: number): void {
  const r = t.routing;
  const experts = r.experts[layer] ?? [-1, -1];
  const weights = r.weights[layer] ?? [0, 0];
  const share = r.ffnShare?.[layer];
  const expertText = share !== undefined ? `FFN units used: ${pct(share)}`
    : experts[0] < 0 ? 'no experts (width path off)' : `experts ${experts[0]} (${weights[0].toFixed(2)}) and ${experts[1]} (${weights[1].toFixed(2)})`;
  const probs = r.loopProbs?.[layer];
  detail.replaceChildren(
    el('p', {}, el('strong', {}, `Token ${i + 1} `), el('code', {}, visible(t.text)), ` · layer ${layer}`),
    el('p', {}, share !== undefined ? `ℓ = ${r.loops[layer]} · ${expertText}` : `ℓ = ${r.loops[layer]} · λ = ${(r.lambdas[layer] ?? 0).toFixed(2)} · ${expertText}`),
  );
  if (probs) detail.append(el('p', { class: 'muted' }, `router: ${probs.map((p, k) => `ℓ${k + 1} ${pct(p)}`).join(' · ')}`));
}

function cellLabel(t: TokenInfo, i: number, layer: number): string {
  const r = t.routing;
  const e = r.experts[layer] ?? [-1, -1];
  const w = r.weights[layer] ?? [0, 0];
  const share = r.ffnShare?.[layer];
  if (share !== undefined) return `Token ${i + 1} "${visible(t.text)}", layer ${layer}: loops ${r.loops[layer]}, FFN units used ${pct(share)}`;
  const experts = e[0] < 0 ? 'no experts' : `experts ${e[0]} weight ${w[0].toFixed(2)}, ${e[1]} weight ${w[1].toFixed(2)}`;
  return `Token ${i + 1} "${visible(t.text)}", layer ${layer}: loops ${r.loops[layer]}, lambda ${(r.lambdas[layer] ?? 0).toFixed(2)}, ${experts}`;
}

function renderHeatmap(tokens: TokenInfo[], detail: HTMLElement): HTMLElement {
  const layers = tokens.reduce((n, t) => Math.max(n, t.routing.loops.length), 0);
  const shares = tokens.some((t) => t.routing.ffnShare !== undefined);
  const wrap = el('div', { class: 'heatmap-wrap' }, el('h3', {}, shares ? 'Loops ℓ per token and layer; shade: share of FFN units used' : 'Loops ℓ per token and layer'));
  const table = el('table', { class: 'heatmap', 'data-testid': 'heatmap', role: 'grid', 'aria-label': `Heat map: ${tokens.length} tokens by ${layers} layers, loops per cell`, 'data-layers': String(layers), 'data-tokens': String(tokens.length) });
  const cells: HTMLElement[] = [];
  const conf = el('tr', { class: 'conf-row', 'data-testid': 'confidence' }, el('th', { scope: 'row' }, 'conf'));
  tokens.forEach((t, i) => {
    const td = el('td', { class: 'conf', role: 'gridcell', 'aria-label': `Token ${i + 1} confidence ${pct(t.prob)}`, title: `confidence ${pct(t.prob)}` });
    td.style.setProperty('--conf', String(Math.max(0, Math.min(1, t.prob))));
    conf.append(td);
  });
  table.append(conf);
  for (let layer = 0; layer < layers; layer++) {
    const row = el('tr', {}, el('th', { scope: 'row' }, `L${layer}`));
    tokens.forEach((t, i) => {
      const l = t.routing.loops[layer] ?? 0;
      const share = t.routing.ffnShare?.[layer];
      const td = el('td', { class: `cell lv-${Math.max(1, Math.min(4, l))}`, role: 'gridcell', 'data-testid': 'heatmap-cell', 'data-token': String(i), 'data-layer': String(layer), 'aria-label': cellLabel(t, i, layer) }, String(l));
      if (share !== undefined) {
        // Upcycled models: the shade is the share of the layer's FFN hidden units the token used.
        td.classList.add('ffn-share');
        td.dataset.share = share.toFixed(3);
        td.title = `FFN units used: ${pct(share)}`;
        td.style.setProperty('--share', String(Math.max(0, Math.min(1, share))));
      }
      const show = (): void => showCell(detail, t, i, layer);
      td.addEventListener('mouseenter', show);
      td.addEventListener('focus', show);
      cells.push(td);
      row.append(td);
    });
    table.append(row);
  }
  roving(table, cells, tokens.length);
  wrap.append(tokens.length === 0 ? el('p', { class: 'muted' }, 'No routing to show.') : el('div', { class: 'scroll' }, table));
  return wrap;
}

function renderCompute(run: InspectedRun): HTMLElement {
  const c = run.compute;
  const box = el('div', { class: 'compute', 'data-testid': 'compute' }, el('h3', {}, 'Compute'));
  // loopShare has one entry per possible loop count: the model's max_loops.
  box.append(el('p', {}, `FFN compute ${c.vsDense.toFixed(2)}× a dense model · ${pct(c.vsMax)} of always running ${c.loopShare.length || 'all'} loops`));
  if (c.meanFfnShare !== undefined) {
    box.append(el('p', { class: 'muted', 'data-testid': 'ffn-share-mean' },
      `FFN units used: ${pct(c.meanFfnShare)} on average (cost per layer: 1/3 gate + 2/3 × share used + 1 per extra loop)`));
  }
  const bars = el('div', { class: 'shares', role: 'img', 'aria-label': `Share of token-layer pairs by loops: ${c.loopShare.map((s, k) => `${k + 1} loops ${pct(s)}`).join(', ')}` });
  c.loopShare.forEach((share, k) => {
    const bar = el('span', { class: `share lv-${k + 1}`, title: `ℓ=${k + 1}: ${pct(share)}` }, share >= 0.08 ? `ℓ${k + 1} ${pct(share)}` : '');
    bar.style.setProperty('--share', String(share));
    bars.append(bar);
  });
  box.append(bars);
  if (c.meanLoopsPerLayer.length > 0) {
    box.append(el('p', { class: 'muted' }, `mean ℓ per layer: ${c.meanLoopsPerLayer.map((m) => m.toFixed(2)).join(' · ')}`));
  }
  return box;
}

interface Stage { key: string; label: string; value: number | null }

function renderTimeline(run: InspectedRun): HTMLElement {
  const t = run.timings;
  const stages: Stage[] = [
    { key: 'debounce', label: 'debounce', value: run.client.debounceMs },
    { key: 'context', label: 'context', value: run.client.contextMs },
    { key: 'queue', label: 'queue', value: t.queueMs },
    { key: 'tokenize', label: 'tokenize', value: t.tokenizeMs },
    { key: 'prefill', label: 'prefill', value: t.prefillMs },
    { key: 'decode', label: 'decode', value: t.decodeMs },
    { key: 'postprocess', label: 'post-process', value: t.postprocessMs },
  ];
  const total = stages.reduce((s, x) => s + (x.value ?? 0), 0);
  const box = el('div', { class: 'timeline', 'data-testid': 'timeline' }, el('h3', {}, 'Timeline'));
  const bar = el('div', { class: 'bar', role: 'img', 'aria-label': stages.map((s) => `${s.label} ${ms(s.value)}`).join(', ') });
  for (const s of stages) {
    if (s.value === null || s.value <= 0) continue;
    const seg = el('span', { class: `seg seg-${s.key}`, title: `${s.label}: ${ms(s.value)}`, 'data-testid': 'timeline-stage', 'data-stage': s.key });
    seg.style.setProperty('--grow', String(s.value));
    bar.append(seg);
  }
  box.append(bar);
  const list = el('ul', { class: 'legend' });
  for (const s of stages) list.append(el('li', { 'data-stage': s.key }, el('span', { class: `dot seg-${s.key}` }), `${s.label} ${ms(s.value)}`));
  list.append(el('li', { 'data-stage': 'firstToken' }, `first token at ${ms(t.firstTokenMs)}`));
  // A multi-line completion's first line, shown as ghost text before the rest came.
  if (t.firstLineMs > 0) list.append(el('li', { 'data-stage': 'firstLine' }, `first line shown at ${ms(t.firstLineMs)}`));
  box.append(list);
  const tps = decodeTokensPerSecond(t);
  const speed = tps === null ? '—' : `${Math.round(tps)} tok/s`;
  box.append(el('p', { class: 'muted' }, `${ms(total)} in all · backend ${ms(t.totalMs)} · prompt ${t.promptTokens} tokens (${t.reusedTokens} reused from cache) · generated ${t.generatedTokens}${t.replayedTokens ? ` (${t.replayedTokens} already picked by the request before)` : ''} · ${speed}`));
  return box;
}

export function renderStats(usage: UsageSummary[], backend: BackendModelStats[]): HTMLElement {
  const box = el('section', { class: 'stats', 'data-testid': 'stats', 'aria-label': 'Statistics per model' }, el('h2', {}, 'Statistics per model'));
  const models = [...new Set([...usage.map((u) => u.model), ...backend.map((b) => b.model)])];
  if (models.length === 0) {
    box.append(el('p', { class: 'muted' }, 'No completions yet.'));
    return box;
  }
  const table = el('table', { class: 'stats-table' },
    el('thead', {}, el('tr', {}, ...['model', 'shown', 'accepted', 'rate', 'p50', 'p95', 'tok/s'].map((h) => el('th', { scope: 'col' }, h)))));
  const body = el('tbody');
  for (const model of models) {
    const u = usage.find((x) => x.model === model);
    const b = backend.find((x) => x.model === model);
    body.append(el('tr', { 'data-testid': 'stats-row', 'data-model': model },
      el('th', { scope: 'row' }, model),
      el('td', {}, String(u?.shown ?? 0)),
      el('td', {}, String(u?.accepted ?? 0)),
      el('td', {}, pct(u?.acceptanceRate ?? null)),
      el('td', {}, ms(u?.latencyP50Ms ?? null)),
      el('td', {}, ms(u?.latencyP95Ms ?? null)),
      el('td', {}, b?.decodeTokensPerSecond != null ? String(Math.round(b.decodeTokensPerSecond)) : '—'),
    ));
  }
  table.append(body);
  box.append(table);
  return box;
}
