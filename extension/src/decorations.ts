// Optional (setting versatileffn.tintAccepted): after an accept, tint each accepted token
// by how hard the model found it (mean loops over layers), then fade out after a while.
import * as vscode from 'vscode';
import type { TokenInfo } from '../../common/protocol';
import { difficultyBucket } from '../../common/difficulty';

const SHOW_MS = 8000;
const COLORS = ['charts.green', 'charts.yellow', 'charts.orange', 'charts.red'];

export class DifficultyTint implements vscode.Disposable {
  private readonly types = COLORS.map((c) =>
    vscode.window.createTextEditorDecorationType({ backgroundColor: new vscode.ThemeColor(c), opacity: '0.9', borderRadius: '2px' }),
  );
  private timer: NodeJS.Timeout | undefined;

  /** Tints `text` inserted at `start` in `editor`, token by token. */
  show(editor: vscode.TextEditor, start: vscode.Position, text: string, tokens: TokenInfo[]): void {
    const doc = editor.document;
    const base = doc.offsetAt(start);
    const ranges: vscode.Range[][] = COLORS.map(() => []);
    let offset = 0;
    for (const token of tokens) {
      if (offset >= text.length) break;
      const len = Math.min(token.text.length, text.length - offset);
      if (len > 0 && token.text.trim().length > 0) {
        const bucket = difficultyBucket(token.routing.loops);
        ranges[bucket - 1]!.push(new vscode.Range(doc.positionAt(base + offset), doc.positionAt(base + offset + len)));
      }
      offset += token.text.length;
    }
    this.types.forEach((t, i) => editor.setDecorations(t, ranges[i]!));
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.types.forEach((t) => editor.setDecorations(t, [])), SHOW_MS);
  }

  dispose(): void {
    clearTimeout(this.timer);
    for (const t of this.types) t.dispose();
  }
}
