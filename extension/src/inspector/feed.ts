// The inspector's feed: the completion runs the backend answers, the timings measured in the
// extension before each request left, and the run the user accepted, which stays shown (pinned)
// until they edit that document again or switch editors.
import * as vscode from 'vscode';
import type { CompleteResult } from '../../../common/protocol';
import type { ClientTimings } from '../../../common/webview';
import { errorText } from '../backend';
import { Lru } from '../lru';
import { runFromCompletion } from './runs';
import type { InspectorView } from './view';

const NO_CLIENT: ClientTimings = { debounceMs: null, contextMs: null };

export class InspectorFeed implements vscode.Disposable {
  private readonly clientTimings = new Lru<string, ClientTimings>(64);
  private readonly results = new Lru<string, CompleteResult>(32);
  /** After an accept, the inspector keeps showing the accepted completion until this document changes again. */
  private pinned: { uri: string; version: number } | null = null;
  private readonly disposables: vscode.Disposable[];

  constructor(private readonly view: InspectorView, private readonly log: (line: string) => void) {
    this.disposables = [
      vscode.workspace.onDidChangeTextDocument((e) => {
        if (this.pinned && e.document.uri.toString() === this.pinned.uri && e.document.version > this.pinned.version) this.pinned = null;
      }),
      vscode.window.onDidChangeActiveTextEditor(() => {
        this.pinned = null;
      }),
    ];
  }

  /** A request is leaving: the stages measured before it went. */
  sent(requestId: string, timings: ClientTimings): void {
    this.clientTimings.set(requestId, timings);
  }

  /**
   * A finished completion: remembered (an accept shows it again) and shown unless an accepted run is
   * pinned. Returns false for what has nothing to show (a cancelled or superseded empty result).
   */
  completed(result: CompleteResult): boolean {
    if (!result || typeof result.requestId !== 'string') return false;
    const empty = !result.tokens || result.tokens.length === 0;
    if (empty && (result.stopReason === 'cancelled' || result.stopReason === 'superseded')) return false;
    this.results.set(result.requestId, result);
    try {
      const run = runFromCompletion(result, this.clientTimings.peek(result.requestId) ?? NO_CLIENT);
      if (run.repaired > 0) this.log(`backend sent ${run.repaired} non-finite number(s) in ${run.id}; shown as 0`);
      if (!this.pinned) this.view.showRun(run);
    } catch (err) {
      this.log(`inspector: could not show ${result.requestId}: ${errorText(err)}`);
    }
    return true;
  }

  /**
   * The user accepted a completion: it is shown again, pinned until they edit. VS Code asks for the
   * next completion right after an accept, and that one should not replace what was just accepted.
   */
  accepted(requestId: string, document: vscode.TextDocument | undefined): CompleteResult | undefined {
    const result = this.results.peek(requestId);
    if (result) {
      this.view.showRun({ ...runFromCompletion(result, this.clientTimings.peek(requestId) ?? NO_CLIENT), accepted: true });
      this.pinned = document ? { uri: document.uri.toString(), version: document.version } : null;
    }
    return result;
  }

  /** Analysis and explicit actions replace a pinned accepted completion. */
  unpin(): void {
    this.pinned = null;
  }

  dispose(): void {
    for (const d of this.disposables) d.dispose();
  }
}
