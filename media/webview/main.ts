// The inspector webview's script (bundled to dist/webview.js). It renders what the
// extension sends and validates every message first; a wrong shape is reported back to
// the extension (which logs it) and otherwise ignored.
import { parseHostMessage, type HostMessage, type WebviewMessage } from '../../common/webview';
import { el } from './dom';
import { renderRun, renderStats } from './render';

interface VsCodeApi {
  postMessage(message: WebviewMessage): void;
}
declare function acquireVsCodeApi(): VsCodeApi;

const vscode = acquireVsCodeApi();
const mode = document.body.dataset.mode === 'compare' ? 'compare' : 'view';
const root = document.getElementById('root')!;

let latest: HostMessage | null = null;
let stats: Extract<HostMessage, { type: 'stats' }> | null = null;
let statusText = '';

window.addEventListener('message', (event: MessageEvent<unknown>) => {
  const parsed = parseHostMessage(event.data);
  if (!parsed.ok) {
    vscode.postMessage({ type: 'rejected', reason: parsed.reason });
    return;
  }
  const message = parsed.value;
  switch (message.type) {
    case 'run':
    case 'compare':
      latest = message;
      break;
    case 'stats':
      stats = message;
      break;
    case 'status':
      statusText = message.text;
      break;
  }
  render();
});

function render(): void {
  const parts: HTMLElement[] = [];
  if (mode === 'view') parts.push(el('p', { class: 'status', 'data-testid': 'backend-status' }, statusText || 'Waiting for the backend…'));
  if (!latest) {
    parts.push(el('p', { class: 'empty', 'data-testid': 'empty' }, 'No completion yet. Type in an editor, or select code and run "Analyze Selection".'));
  } else if (latest.type === 'run') {
    parts.push(renderRun(latest.run));
  } else if (latest.type === 'compare') {
    parts.push(el('div', { class: 'compare', 'data-testid': 'compare' }, ...latest.runs.map(renderRun)));
  }
  if (mode === 'view') {
    if (stats) parts.push(renderStats(stats.usage, stats.backend));
    parts.push(actions());
  }
  root.replaceChildren(...parts);
}

function actions(): HTMLElement {
  const button = (label: string, command: Extract<WebviewMessage, { type: 'command' }>['command']): HTMLElement => {
    const b = el('button', { type: 'button', 'data-testid': `action-${command}` }, label);
    b.addEventListener('click', () => vscode.postMessage({ type: 'command', command }));
    return b;
  };
  return el('nav', { class: 'actions', 'aria-label': 'Inspector actions' },
    button('Analyze Selection', 'analyzeSelection'),
    button('Switch Model', 'switchModel'),
    button('Compare Models', 'compareModels'),
    button('Show Logs', 'showLogs'),
  );
}

render();
vscode.postMessage({ type: 'ready' });
