// The Compare Models panel: the same completion request answered by two models, side by side.
import * as vscode from 'vscode';
import { inspectorHtml, webviewOptions } from './html';
import { parseWebviewMessage, type InspectedRun, type WebviewCommand } from '../../../common/webview';

export class ComparePanel {
  private static current: ComparePanel | undefined;
  private runs: InspectedRun[] = [];

  static show(extensionUri: vscode.Uri, runs: InspectedRun[], log: (line: string) => void, runCommand: (c: WebviewCommand) => void): void {
    if (!ComparePanel.current) ComparePanel.current = new ComparePanel(extensionUri, log, runCommand);
    ComparePanel.current.update(runs);
  }

  private readonly panel: vscode.WebviewPanel;

  private constructor(extensionUri: vscode.Uri, private readonly log: (line: string) => void, runCommand: (c: WebviewCommand) => void) {
    this.panel = vscode.window.createWebviewPanel('vffn.compare', 'VersatileFFN: Compare Models', vscode.ViewColumn.Beside, {
      ...webviewOptions(extensionUri),
      retainContextWhenHidden: false,
    });
    this.panel.webview.html = inspectorHtml(this.panel.webview, extensionUri, 'compare');
    this.panel.webview.onDidReceiveMessage((data: unknown) => {
      const parsed = parseWebviewMessage(data);
      if (!parsed.ok) {
        log(`compare: rejected a webview message (${parsed.reason})`);
        return;
      }
      const message = parsed.value;
      switch (message.type) {
        case 'ready':
          this.post();
          return;
        case 'command':
          runCommand(message.command);
          return;
        case 'rejected':
          log(`compare: the webview rejected a message (${message.reason})`);
          return;
      }
    });
    this.panel.onDidDispose(() => {
      ComparePanel.current = undefined;
    });
  }

  private update(runs: InspectedRun[]): void {
    this.runs = runs;
    this.panel.reveal(vscode.ViewColumn.Beside, true);
    this.post();
  }

  private post(): void {
    void this.panel.webview.postMessage({ type: 'compare', runs: this.runs }).then(undefined, (err: unknown) => this.log(`compare: post failed: ${String(err)}`));
  }
}
