// Feeds the ring buffer: a chunk around the cursor of each file the user visits, and around
// the last edit of each file the user changes (once the edits pause), and on save.
import * as vscode from 'vscode';
import type { Config } from '../config';
import { FILE_SCHEMES } from './request';
import { EditSettler } from './editSettle';
import { chunkAround, type ChunkRing } from './ringBuffer';

const EDIT_SETTLE_MS = 1500;

export class RecentContext implements vscode.Disposable {
  private readonly disposables: vscode.Disposable[] = [];
  private readonly edits = new EditSettler<{ document: vscode.TextDocument; line: number }>(EDIT_SETTLE_MS, (_, { document, line }) => {
    if (!document.isClosed) this.capture(document, line);
  });

  constructor(private readonly ring: ChunkRing, private readonly config: () => Config) {
    this.disposables.push(
      vscode.window.onDidChangeActiveTextEditor((editor) => {
        if (!editor) return;
        this.edits.settleAllBut(editor.document.uri.toString());
        this.capture(editor.document, editor.selection.active.line);
      }),
      vscode.workspace.onDidChangeTextDocument((e) => {
        const change = e.contentChanges[0];
        if (change) this.editedAt(e.document, change.range.start.line);
      }),
      vscode.workspace.onDidSaveTextDocument((doc) => {
        const editor = vscode.window.visibleTextEditors.find((ed) => ed.document === doc);
        if (editor) this.capture(doc, editor.selection.active.line);
      }),
    );
  }

  dispose(): void {
    this.edits.dispose();
    for (const d of this.disposables) d.dispose();
  }

  private editedAt(document: vscode.TextDocument, line: number): void {
    if (FILE_SCHEMES.has(document.uri.scheme)) this.edits.edited(document.uri.toString(), { document, line });
  }

  private capture(document: vscode.TextDocument, line: number): void {
    const config = this.config();
    if (!config.contextChunks.enabled || !FILE_SCHEMES.has(document.uri.scheme)) return;
    if (document.lineCount > 200_000) return;
    const size = config.contextChunks.lines;
    const first = Math.max(0, Math.min(line - Math.floor(size / 2), document.lineCount - size));
    const lines: string[] = [];
    for (let i = first; i < Math.min(document.lineCount, first + size); i++) lines.push(document.lineAt(i).text);
    const text = chunkAround(lines, line - first, size);
    if (text.length > 0 && text.length <= config.contextChunks.maxChars) this.ring.add(document.uri.toString(), text);
  }
}
