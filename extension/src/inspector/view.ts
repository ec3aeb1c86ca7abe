// The Routing Inspector view (activity bar container "vffn"). It keeps the latest run,
// the statistics and the backend status, and replays them whenever the webview (re)loads.
import * as vscode from 'vscode';
import { inspectorHtml, webviewOptions } from './html';
import { parseWebviewMessage, type HostMessage, type InspectedRun, type WebviewCommand } from '../../../common/webview';

export const VIEW_ID = 'vffn.inspector';

export class InspectorView implements vscode.WebviewViewProvider, vscode.Disposable {
  private view: vscode.WebviewView | undefined;
  private lastRun: HostMessage | undefined;
  private lastStats: HostMessage | undefined;
  private lastStatus: HostMessage | undefined;
  private readonly disposables: vscode.Disposable[] = [];

  constructor(
    private readonly extensionUri: vscode.Uri,
    private readonly log: (line: string) => void,
    private readonly runCommand: (command: WebviewCommand) => void,
  ) {}

  resolveWebviewView(view: vscode.WebviewView): void {
    this.view = view;
    view.webview.options = webviewOptions(this.extensionUri);
    view.webview.html = inspectorHtml(view.webview, this.extensionUri, 'view');
    this.disposables.push(
      view.webview.onDidReceiveMessage((data: unknown) => this.receive(data)),
      view.onDidDispose(() => {
        if (this.view === view) this.view = undefined;
      }),
    );
  }

  /** The run the view shows now (the e2e tests and Compare read it through commands, not this). */
  showRun(run: InspectedRun): void {
    this.lastRun = { type: 'run', run };
    this.post(this.lastRun);
  }

  showStats(message: Extract<HostMessage, { type: 'stats' }>): void {
    this.lastStats = message;
    this.post(message);
  }

  showStatus(text: string): void {
    this.lastStatus = { type: 'status', text };
    this.post(this.lastStatus);
  }

  async reveal(): Promise<void> {
    await vscode.commands.executeCommand(`${VIEW_ID}.focus`);
  }

  dispose(): void {
    for (const d of this.disposables) d.dispose();
  }

  private receive(data: unknown): void {
    const parsed = parseWebviewMessage(data);
    if (!parsed.ok) {
      this.log(`inspector: rejected a webview message (${parsed.reason})`);
      return;
    }
    const message = parsed.value;
    switch (message.type) {
      case 'ready':
        for (const m of [this.lastStatus, this.lastStats, this.lastRun]) if (m) this.post(m);
        return;
      case 'command':
        this.runCommand(message.command);
        return;
      case 'rejected':
        this.log(`inspector: the webview rejected a message (${message.reason})`);
        return;
    }
  }

  private post(message: HostMessage): void {
    if (!this.view) return;
    void this.view.webview.postMessage(message).then(undefined, (err: unknown) => this.log(`inspector: post failed: ${String(err)}`));
  }
}
