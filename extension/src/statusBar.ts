// The status bar item: "VFFN" then the state, model, provider and the last completion's
// latency and decode speed. Clicking it opens a menu of the extension's commands.
import * as vscode from 'vscode';
import type { BackendStatus } from './backend';
import { describeLoading } from './loadProgress';

export interface LastRun {
  totalMs: number;
  tokensPerSecond: number | null;
}

export class StatusBar implements vscode.Disposable {
  private readonly item = vscode.window.createStatusBarItem('vffn.status', vscode.StatusBarAlignment.Right, 100);
  private backend: BackendStatus = { phase: 'stopped', server: null, message: null };
  private enabled = true;
  private last: LastRun | null = null;

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

  dispose(): void {
    this.item.dispose();
  }

  private render(): void {
    const { text, tooltip, error } = describe(this.backend, this.enabled, this.last);
    this.item.text = text;
    this.item.tooltip = new vscode.MarkdownString(`**VersatileFFN** — ${tooltip}\n\nClick for commands.`);
    this.item.backgroundColor = error ? new vscode.ThemeColor('statusBarItem.errorBackground') : undefined;
  }
}

/** The item's text and tooltip for a state (exported for reading, kept free of side effects). */
export function describe(b: BackendStatus, enabled: boolean, last: LastRun | null): { text: string; tooltip: string; error: boolean } {
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
      return { text: `VFFN $(check) ${model} · ${provider}${timing}`, tooltip: `Ready: ${model} on ${provider}.${server.message ? ` ${server.message}` : ''}`, error: false };
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
