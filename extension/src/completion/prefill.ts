// Reads the prompt ahead while the cursor rests. VS Code asks for inline completions only after
// typing, never when the cursor moves (a click, arrow keys, another file), so the first keystroke at
// a new place used to pay for a cold prompt: seconds on a CPU for the 0.5B model. Once the cursor
// has rested for REST_MS, the place's request goes to the backend as vffn/prefill: the prompt the
// completion will run goes into the KV cache, and the first completion there reuses it. The backend
// runs it only while no completion waits and drops it between chunks for any newer request.
import * as vscode from 'vscode';
import { PrefillRequest, PrefillResult } from '../../../common/protocol';
import type { Backend } from '../backend';
import type { Config } from '../config';
import { completionsAllowed, FILE_SCHEMES, placeKey, requestAt } from './request';
import type { ChunkRing } from './ringBuffer';

/** How long the cursor must stay put: key repeat and clicking through code move it more often than this. */
export const REST_MS = 400;

export interface IdlePrefillDeps {
  backend: Backend;
  config: () => Config;
  ring: ChunkRing;
  log: (line: string) => void;
  /** Whether the running backend has a model ready (before that a prefill could only fail). */
  modelReady: () => boolean;
  /** A prefill was sent / answered (null: it failed): the status bar shows the reading. */
  onStart?: () => void;
  onEnd?: (result: PrefillResult | null) => void;
}

export class IdlePrefill implements vscode.Disposable {
  private readonly disposables: vscode.Disposable[] = [];
  private timer: NodeJS.Timeout | undefined;
  /**
   * The place last asked about, by a completion or a prefill: resting there again needs no message.
   * Only the last: a place further back may have lost its KV cache to newer ones, and the backend
   * answers a prefill whose prompt is still cached at once, without running anything.
   */
  private lastPlace: string | null = null;
  private counter = 0;

  constructor(private readonly deps: IdlePrefillDeps) {
    this.disposables.push(
      vscode.window.onDidChangeTextEditorSelection((e) => this.moved(e.textEditor)),
      vscode.window.onDidChangeActiveTextEditor((editor) => editor && this.moved(editor)),
    );
  }

  /** A completion was requested at `place`: its prompt is being read already. */
  requested(place: string): void {
    this.lastPlace = place;
  }

  /** Reads the active editor's place once the cursor has rested there (a model just became ready). */
  kick(): void {
    const editor = vscode.window.activeTextEditor;
    if (editor) this.moved(editor);
  }

  /** The backend's caches were lost (a restart, another model): the last place may be read again. */
  forget(): void {
    this.lastPlace = null;
  }

  dispose(): void {
    clearTimeout(this.timer);
    for (const d of this.disposables) d.dispose();
  }

  private moved(editor: vscode.TextEditor): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.rested(editor), REST_MS);
  }

  private rested(editor: vscode.TextEditor): void {
    const config = this.deps.config();
    if (!config.prefillOnRest || editor !== vscode.window.activeTextEditor || editor.document.isClosed) return;
    // A selection is about to be replaced or copied, not completed.
    if (!editor.selection.isEmpty || editor.selections.length > 1) return;
    const { document } = editor;
    const position = editor.selection.active;
    if (!FILE_SCHEMES.has(document.uri.scheme) || !completionsAllowed(config, document)) return;
    const place = placeKey(document, position);
    // Typing: the completion provider asked here already (and the backend has its prompt).
    if (place === this.lastPlace) return;
    const client = this.deps.backend.ready;
    if (!client || !this.deps.modelReady()) return;
    this.lastPlace = place;
    const params = { ...requestAt(document, position, config, this.deps.ring).params, requestId: `p${++this.counter}-${Date.now().toString(36)}` };
    this.deps.onStart?.();
    client.sendRequest(PrefillRequest, params).then(
      (r) => {
        if (r.error) this.deps.log(`prefill ${params.requestId}: ${r.error}`);
        this.deps.onEnd?.(r);
      },
      (err) => {
        this.deps.log(`prefill ${params.requestId}: ${err instanceof Error ? err.message : String(err)}`);
        this.deps.onEnd?.(null);
      },
    );
  }

}
