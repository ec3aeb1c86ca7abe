// The inline completion provider. It never edits the document: it only returns items that
// VS Code shows as ghost text and inserts when the user accepts them. Every failure ends in
// "no completion", logged, never an error in the editor.
import * as vscode from 'vscode';
import type { LanguageClient } from 'vscode-languageclient/node';
import { CompletePartialProgress, CompleteRequest, type CompleteParams, type CompletePartial, type CompleteResult } from '../../../common/protocol';
import type { ClientTimings } from '../../../common/webview';
import type { Backend } from '../backend';
import type { Config } from '../config';
import type { UsageStats } from '../stats';
import type { AcceptedArgs } from './accepted';
import type { CompletionCache } from './cache';
import { debounceDelay, sleep } from './debounce';
import type { ChunkRing } from './ringBuffer';
import { completionsAllowed, placeKey, requestAt } from './request';
import { isBlank, shapeCompletion } from './shape';

export interface ProviderDeps {
  backend: Backend;
  config: () => Config;
  cache: CompletionCache;
  ring: ChunkRing;
  stats: UsageStats;
  log: (line: string) => void;
  /** Called before a request leaves, with the stages measured here. */
  onSent: (requestId: string, timings: ClientTimings) => void;
  /** Called with every answer (the inspector and the status bar show it). */
  onResult: (result: CompleteResult, roundTripMs: number) => void;
  /** Called with the place (request.ts placeKey) of every completion asked for or served from the cache: the idle prefill leaves it alone. */
  onPlaceAsked?: (place: string) => void;
}

export class InlineProvider implements vscode.InlineCompletionItemProvider {
  private counter = 0;

  constructor(private readonly deps: ProviderDeps) {}

  async provideInlineCompletionItems(
    document: vscode.TextDocument,
    position: vscode.Position,
    context: vscode.InlineCompletionContext,
    token: vscode.CancellationToken,
  ): Promise<vscode.InlineCompletionItem[] | undefined> {
    try {
      return await this.provide(document, position, context, token);
    } catch (err) {
      this.deps.log(`completion failed: ${err instanceof Error ? err.message : String(err)}`);
      return undefined;
    }
  }

  private async provide(
    document: vscode.TextDocument,
    position: vscode.Position,
    context: vscode.InlineCompletionContext,
    token: vscode.CancellationToken,
  ): Promise<vscode.InlineCompletionItem[] | undefined> {
    const config = this.deps.config();
    if (!completionsAllowed(config, document)) return undefined;
    // While the suggest widget is open VS Code wants items that extend its selection; stay out.
    if (context.selectedCompletionInfo) return undefined;

    const debounceStart = Date.now();
    const contextStart = Date.now();
    const { params: request, multiline } = requestAt(document, position, config, this.deps.ring);
    const { prefix, suffix } = request;

    const hit = this.deps.cache.get(document.languageId, prefix, suffix);
    if (hit) {
      this.deps.onPlaceAsked?.(placeKey(document, position));
      const text = shapeCompletion(hit.rest, multiline);
      if (isBlank(text)) return undefined;
      this.deps.stats.shown(hit.model, hit.requestId);
      return [this.item(document, position, text, hit.requestId, hit.model)];
    }
    const contextMs = Date.now() - contextStart;

    const explicit = context.triggerKind === vscode.InlineCompletionTriggerKind.Invoke;
    if (!(await sleep(debounceDelay({ explicit, cached: false, configuredMs: config.debounceMs }), token))) return undefined;
    const client = this.deps.backend.ready;
    if (!client) return undefined;

    const requestId = `c${++this.counter}-${Date.now().toString(36)}`;
    // Multi-line: the backend sends the first line as soon as it is generated (LSP partial result),
    // and it is shown while the rest is generated (showRestLater).
    const params: CompleteParams = { ...request, requestId, ...(multiline ? { partialResultToken: requestId } : {}) };
    this.deps.onPlaceAsked?.(placeKey(document, position));
    this.deps.onSent(requestId, { debounceMs: Date.now() - debounceStart - contextMs, contextMs });
    const sent = Date.now();
    // Our own token: VS Code's is cancelled when the user types on (the backend then drops the request),
    // but not after the first line was shown, when the rest must still arrive.
    const own = new vscode.CancellationTokenSource();
    let shown = false;
    const onCancel = token.onCancellationRequested(() => { if (!shown) own.cancel(); });
    let firstLine: ((p: CompletePartial) => void) | undefined;
    const partial = new Promise<CompletePartial>((resolve) => { firstLine = resolve; });
    const progress = multiline ? client.onProgress(CompletePartialProgress, requestId, (p) => firstLine!(p)) : undefined;
    const settle = (result: CompleteResult | undefined) => {
      progress?.dispose();
      onCancel.dispose();
      own.dispose();
      if (!result) return undefined;
      const roundTripMs = Date.now() - sent;
      this.deps.onResult(result, roundTripMs);
      // Ended by a newer request or a cancellation: no answer, not an empty one (showRestLater must not hide the newer one's).
      if (result.stopReason === 'cancelled' || result.stopReason === 'superseded') return undefined;
      if (result.error) {
        this.deps.log(`complete ${requestId}: backend error: ${result.error}`);
        return undefined;
      }
      const text = shapeCompletion(result.completion, multiline);
      // Keep the answer even if the user moved on: typing on may make it useful again.
      this.deps.cache.set(document.languageId, prefix, suffix, { completion: text, requestId, model: result.model });
      return { text, model: result.model, roundTripMs };
    };
    const whole = this.send(client, params, own.token, requestId).then(settle);
    const first = await Promise.race([whole.then(() => null), partial]);
    if (first && !token.isCancellationRequested && !isBlank(first.completion)) {
      shown = true;
      const firstMs = Date.now() - sent;
      this.showRestLater(whole, document, position, first.completion, `complete ${requestId}: first line shown after ${firstMs} ms`);
      this.deps.stats.shown(first.model, requestId);
      this.deps.stats.latency(first.model, firstMs);
      return [this.item(document, position, first.completion, requestId, first.model)];
    }
    const done = await whole;
    if (!done || token.isCancellationRequested || isBlank(done.text)) return undefined;
    this.deps.stats.shown(done.model, requestId);
    this.deps.stats.latency(done.model, done.roundTripMs);
    return [this.item(document, position, done.text, requestId, done.model)];
  }

  /** The request's result, or undefined (logged) when it was cancelled or the backend went away mid-request. */
  private async send(client: LanguageClient, params: CompleteParams, token: vscode.CancellationToken, requestId: string): Promise<CompleteResult | undefined> {
    try {
      return await client.sendRequest(CompleteRequest, params, token);
    } catch (err) {
      if (!token.isCancellationRequested) this.deps.log(`complete ${requestId}: ${err instanceof Error ? err.message : String(err)}`);
      return undefined;
    }
  }

  /**
   * After a multi-line completion's first line was shown: once the whole completion is in the cache
   * (settle), asks VS Code for the inline suggestion again if the cursor is still where it was asked
   * for; the cache answers at once and the ghost text grows to the whole completion. VS Code has no
   * way to update shown ghost text, and asks a provider again only when the user types or asks.
   */
  private showRestLater(
    whole: Promise<{ text: string; roundTripMs: number } | undefined>, document: vscode.TextDocument, position: vscode.Position,
    firstLine: string, logLine: string,
  ): void {
    const version = document.version;
    void whole.then((done) => {
      if (!done) return;
      this.deps.log(`${logLine}, whole completion after ${done.roundTripMs} ms`);
      if (done.text === firstLine) return;
      const editor = vscode.window.activeTextEditor;
      const unmoved = editor?.document === document && document.version === version && editor.selection.isEmpty
        && editor.selection.active.isEqual(position);
      if (!unmoved) return;
      // The whole completion came out empty (cut by the rules once generation ended): take the first line away too.
      void vscode.commands.executeCommand(isBlank(done.text) ? 'editor.action.inlineSuggest.hide' : 'editor.action.inlineSuggest.trigger');
    });
  }

  private item(document: vscode.TextDocument, position: vscode.Position, text: string, requestId: string, model: string): vscode.InlineCompletionItem {
    const args: AcceptedArgs = { requestId, model, uri: document.uri.toString(), line: position.line, character: position.character, text };
    return new vscode.InlineCompletionItem(text, new vscode.Range(position, position), {
      title: 'Accept VersatileFFN completion',
      command: 'vffn.accepted',
      arguments: [args],
    });
  }
}

