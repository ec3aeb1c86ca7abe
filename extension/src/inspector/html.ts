// The HTML shell of the inspector webviews: a strict CSP with a nonce, and only the
// stylesheet from media/ and the script from dist/.
import { randomBytes } from 'node:crypto';
import * as vscode from 'vscode';

export type InspectorMode = 'view' | 'compare';

export function webviewOptions(extensionUri: vscode.Uri): vscode.WebviewOptions {
  return {
    enableScripts: true,
    localResourceRoots: [vscode.Uri.joinPath(extensionUri, 'media'), vscode.Uri.joinPath(extensionUri, 'dist')],
  };
}

export function inspectorHtml(webview: vscode.Webview, extensionUri: vscode.Uri, mode: InspectorMode): string {
  const nonce = randomBytes(16).toString('base64');
  const css = webview.asWebviewUri(vscode.Uri.joinPath(extensionUri, 'media', 'webview', 'inspector.css'));
  const js = webview.asWebviewUri(vscode.Uri.joinPath(extensionUri, 'dist', 'webview.js'));
  const csp = [
    "default-src 'none'",
    `style-src ${webview.cspSource}`,
    `img-src ${webview.cspSource}`,
    `font-src ${webview.cspSource}`,
    `script-src 'nonce-${nonce}'`,
  ].join('; ');
  const title = mode === 'compare' ? 'Compare Models' : 'Routing Inspector';
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="UTF-8">
<meta http-equiv="Content-Security-Policy" content="${csp}">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<link rel="stylesheet" href="${css.toString()}">
<title>${title}</title>
</head>
<body data-mode="${mode}">
<main id="root" data-testid="inspector-root" aria-live="polite"><p class="empty">Loading…</p></main>
<script nonce="${nonce}" src="${js.toString()}"></script>
</body>
</html>`;
}
