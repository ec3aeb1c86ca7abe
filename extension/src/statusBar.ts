// The status bar item: "VFFN" then the state, model, provider and the last completion's
// latency and decode speed. Clicking it opens a menu of the extension's commands.
import * as vscode from 'vscode';
import type { BackendStatus } from './backend';
import type { PrefillResult } from '../../common/protocol';
import { describeLoading } from './loadProgress';
import { READING_ICON, READING_TEXT, readAheadLine, SHOW_READING_AFTER_MS } from './readAhead';

export interface LastRun {
  totalMs: number;
  tokensPerSecond: number | null;
}

export class StatusBar implements vscode.Disposable {
  private readonly item = vscode.window.createStatusBarItem('vffn.status', vscode.StatusBarAlignment.Right, 100);
  private backend: BackendStatus = { phase: 'stopped', server: null, message: null };
  private enabled = true;
  private last: LastRun | null = null;
  private reading = false;
  private readingTimer: NodeJS.Timeout | undefined;
  /** Prefills sent and not yet answered: a newer one can start before the older one's (superseded) answer. */
  private prefillsInFlight = 0;
  private lastPrefill: PrefillResult | null = null;

  constructor() {
    this.item.name = 'VersatileFFN';
    this.item.command = 'vffn.statusMenu';
    this.render();
    this.item.show();
  }

  setBackend(status: BackendStatus): void {
    this.backend = status;
    this.render();
  }

  setEnabled(enabled: boolean): void {
    this.enabled = enabled;
    this.render();
  }

  setLastRun(run: LastRun): void {
    this.last = run;
    this.render();
  }

  /** A prefill went to the backend: shown as reading unless it is answered at once (its prompt was cached). */
  prefillStarted(): void {
    if (this.prefillsInFlight++ > 0) return;
    this.readingTimer = setTimeout(() => { this.reading = true; this.render(); }, SHOW_READING_AFTER_MS);
  }

  /** A prefill's answer (null: it failed; the backend's log line says why). Reading ends with the last one. */
  prefillEnded(result: PrefillResult | null): void {
    if (result && result.readTokens > 0) this.lastPrefill = result;
    this.prefillsInFlight = Math.max(0, this.prefillsInFlight - 1);
    if (this.prefillsInFlight === 0) {
      clearTimeout(this.readingTimer);
      this.reading = false;
    }
    this.render();
  }

  dispose(): void {
    clearTimeout(this.readingTimer);
    this.item.dispose();
  }

  private render(): void {
    const { text, tooltip, error } = describe(this.backend, this.enabled, this.last, this.reading, this.lastPrefill);
    this.item.text = text;
    this.item.tooltip = new vscode.MarkdownString(`**VersatileFFN** — ${tooltip}\n\nClick for commands.`);
    this.item.backgroundColor = error ? new vscode.ThemeColor('statusBarItem.errorBackground') : undefined;
  }
}

/** The item's text and tooltip for a state (exported for reading, kept free of side effects). */
export function describe(b: BackendStatus, enabled: boolean, last: LastRun | null, reading = false,
                         lastPrefill: PrefillResult | null = null): { text: string; tooltip: string; error: boolean } {
  const server = b.server;
  const model = server?.model ?? 'no model';
  const provider = server?.provider ?? '…';
  switch (b.phase) {
    case 'failed':
      return { text: 'VFFN $(error) error', tooltip: b.message ?? 'The backend failed.', error: true };
    case 'restarting':
      return { text: 'VFFN $(sync~spin) restarting', tooltip: b.message ?? 'The backend is restarting.', error: true };
    case 'stopped':
      return { text: 'VFFN $(debug-stop) stopped', tooltip: 'The backend is not running.', error: false };
    case 'starting':
      return { text: 'VFFN $(sync~spin) starting', tooltip: 'Starting the backend…', error: false };
    case 'running':
      break;
  }
  if (!enabled) return { text: 'VFFN $(circle-slash) disabled', tooltip: `Completions are off (model ${model}). Run "VersatileFFN: Toggle Completions" to turn them on.`, error: false };
  const loading = server?.state === 'error' ? null : describeLoading(server);
  if (loading) return { ...loading, error: false };
  switch (server?.state) {
    case undefined:
      return { text: 'VFFN $(sync~spin) starting', tooltip: 'Waiting for the backend to report its model…', error: false };
    case 'loading':
      return { text: `VFFN $(sync~spin) loading${server.model ? ` ${server.model}` : ''}`, tooltip: server.message ?? 'Loading a model…', error: false };
    case 'error':
      return { text: `VFFN $(error) ${server.model ?? 'no model'}`, tooltip: server.message ?? 'The backend reported an error.', error: true };
    case 'working':
      return { text: `VFFN $(loading~spin) ${model} · ${provider}`, tooltip: `Completing with ${model} on ${provider}…`, error: false };
    case 'ready': {
      const timing = last ? ` · ${Math.round(last.totalMs)} ms${last.tokensPerSecond !== null ? ` · ${Math.round(last.tokensPerSecond)} tok/s` : ''}` : '';
      const ahead = readAheadLine(lastPrefill);
      const tooltip = `Ready: ${model} on ${provider}.${server.message ? ` ${server.message}` : ''}${ahead ? `\n\n${ahead}` : ''}`;
      if (reading) return { text: `VFFN ${READING_ICON} ${model} · ${provider} · ${READING_TEXT}`, tooltip: `Reading the prompt at the cursor ahead of your first keystroke. ${tooltip}`, error: false };
      return { text: `VFFN $(check) ${model} · ${provider}${timing}`, tooltip, error: false };
    }
  }
}

/** One line on the backend's state for the inspector's status line. */
export function statusLine(s: BackendStatus): string {
  if (s.message) return s.message;
  const server = s.server;
  if (!server) return s.phase === 'running' ? 'Backend running; waiting for its model.' : `Backend ${s.phase}.`;
  if (server.state === 'error') return `Error: ${server.message ?? 'the backend reported an error.'}`;
  if (server.loading) return describeLoading(server)!.tooltip;
  if (server.state === 'loading') return server.message ?? 'Loading a model…';
  return `${server.state === 'working' ? 'Working' : 'Ready'}: ${server.model ?? 'no model'} on ${server.provider ?? '—'}.`;
}
