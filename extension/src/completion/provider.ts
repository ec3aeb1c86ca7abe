// The inline completion provider. It never edits the document: it only returns items that
// VS Code shows as ghost text and inserts when the user accepts them. Every failure ends in
// "no completion", logged, never an error in the editor.
import * as vscode from 'vscode';
import { CompleteRequest, type CompleteParams, type CompleteResult } from '../../../common/protocol';
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
    const params: CompleteParams = { ...request, requestId };
    this.deps.onPlaceAsked?.(placeKey(document, position));
    this.deps.onSent(requestId, { debounceMs: Date.now() - debounceStart - contextMs, contextMs });
    const sent = Date.now();
    let result: CompleteResult;
    try {
      result = await client.sendRequest(CompleteRequest, params, token);
    } catch (err) {
      // Cancelled, superseded, or the backend went away mid-request: no completion.
      if (!token.isCancellationRequested) this.deps.log(`complete ${requestId}: ${err instanceof Error ? err.message : String(err)}`);
      return undefined;
    }
    const roundTripMs = Date.now() - sent;
    this.deps.onResult(result, roundTripMs);
    if (result.error) {
      this.deps.log(`complete ${requestId}: backend error: ${result.error}`);
      return undefined;
    }
    const text = shapeCompletion(result.completion, multiline);
    // Keep the answer even if the user moved on: typing on may make it useful again.
    this.deps.cache.set(document.languageId, prefix, suffix, { completion: text, requestId, model: result.model });
    if (token.isCancellationRequested || isBlank(text)) return undefined;
    this.deps.stats.shown(result.model, requestId);
    this.deps.stats.latency(result.model, roundTripMs);
    return [this.item(document, position, text, requestId, result.model)];
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

