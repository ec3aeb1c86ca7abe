// The one context object: it owns the backend, the status bar, the completion provider, the
// inspector and everything that must be disposed with them. Commands receive it; nothing
// else holds global state.
import * as vscode from 'vscode';
import {
  ListModelsRequest,
  SetProviderRequest,
  StatsRequest,
  SwitchModelRequest,
  type BackendInitOptions,
  type CompleteResult,
} from '../../common/protocol';
import { Backend, errorText, type BackendStatus } from './backend';
import { CompletionCache } from './completion/cache';
import { Lru } from './completion/lru';
import { InlineProvider } from './completion/provider';
import { RecentContext } from './completion/recent';
import { ChunkRing } from './completion/ringBuffer';
import { needsRestart, readConfig, SECTION, type Config } from './config';
import { DifficultyTint } from './decorations';
import type { WebviewCommand } from './inspector/messages';
import { runFromCompletion, type ClientTimings } from './inspector/runs';
import { InspectorView, VIEW_ID } from './inspector/view';
import { describeLoading } from './loadProgress';
import { createLogChannel } from './logs';
import { UsageStats } from './stats';
import { StatusBar } from './statusBar';

const STATS_KEY = 'vffn.usageStats';
export const LAST_MODEL_KEY = 'vffn.lastModel';

export class Ctx implements vscode.Disposable {
  readonly channel = createLogChannel();
  readonly statusBar = new StatusBar();
  readonly stats: UsageStats;
  readonly backend: Backend;
  readonly inspector: InspectorView;
  readonly tint = new DifficultyTint();
  private cfg: Config = readConfig();
  private readonly cache: CompletionCache;
  private readonly ring: ChunkRing;
  private readonly clientTimings = new Lru<string, ClientTimings>(64);
  private readonly tokensById = new Lru<string, CompleteResult>(32);
  private readonly disposables: vscode.Disposable[] = [];
  private lastServerError: string | null = null;
  /** After an accept, the inspector keeps showing the accepted completion until this document changes again. */
  private pinned: { uri: string; version: number } | null = null;
  /** The model the backend last reported as loaded: a restart after a crash loads it again. */
  private activeModel: string | null = null;
  private lastPhase: BackendStatus['phase'] = 'stopped';
  private statsTimer: NodeJS.Timeout | undefined;

  constructor(readonly extension: vscode.ExtensionContext) {
    this.stats = UsageStats.fromJSON(extension.globalState.get(STATS_KEY));
    this.cache = new CompletionCache(this.cfg.cacheSize);
    this.ring = new ChunkRing({ capacity: this.cfg.contextChunks.count, duplicateThreshold: 0.9 });
    this.backend = new Backend({
      serverModule: extension.asAbsolutePath('dist/server.js'),
      channel: this.channel,
      initOptions: () => this.initOptions(),
      maxCrashes: () => this.cfg.maxCrashes,
    });
    this.inspector = new InspectorView(extension.extensionUri, (l) => this.log(l), (c) => this.runWebviewCommand(c));
  }

  get config(): Config {
    return this.cfg;
  }

  /** Registers everything and starts the backend; failures here are shown, not thrown. */
  async activate(): Promise<void> {
    const provider = new InlineProvider({
      backend: this.backend,
      config: () => this.cfg,
      cache: this.cache,
      ring: this.ring,
      stats: this.stats,
      log: (l) => this.log(l),
      onSent: (id, timings) => this.clientTimings.set(id, timings),
      onResult: (result, roundTripMs) => this.onCompletion(result, roundTripMs),
    });
    this.disposables.push(
      this.channel,
      this.statusBar,
      this.backend,
      this.inspector,
      this.tint,
      new RecentContext(this.ring, () => this.cfg),
      vscode.languages.registerInlineCompletionItemProvider({ pattern: '**' }, provider),
      vscode.window.registerWebviewViewProvider(VIEW_ID, this.inspector, { webviewOptions: { retainContextWhenHidden: true } }),
      vscode.workspace.onDidChangeConfiguration((e) => void this.onConfigChange(e)),
      this.backend.onStatus((s) => this.onBackendStatus(s)),
      this.backend.onTelemetry((r) => this.onCompletion(r, null)),
      this.backend.onFailed((message) => void this.showFailure(message)),
      vscode.workspace.onDidChangeTextDocument((e) => {
        if (this.pinned && e.document.uri.toString() === this.pinned.uri && e.document.version > this.pinned.version) this.pinned = null;
      }),
      vscode.window.onDidChangeActiveTextEditor(() => {
        this.pinned = null;
      }),
    );
    this.statusBar.setEnabled(this.cfg.enabled);
    this.postStats();
    await this.backend.start();
  }

  log(line: string): void {
    this.channel.appendLine(`[extension] ${line}`);
  }

  /**
   * Records an accepted completion (the command attached to each item runs this) and shows
   * it in the inspector, pinned there until the user edits again: VS Code asks for the next
   * completion right after an accept, and that one should not replace what was just accepted.
   */
  accepted(requestId: string, model: string, document: vscode.TextDocument | undefined): CompleteResult | undefined {
    this.stats.accepted(model);
    this.saveStats();
    const result = this.tokensById.peek(requestId);
    if (result) {
      const client = this.clientTimings.peek(requestId) ?? { debounceMs: null, contextMs: null };
      this.inspector.showRun({ ...runFromCompletion(result, client), accepted: true });
      this.pinned = document ? { uri: document.uri.toString(), version: document.version } : null;
    }
    return result;
  }

  /** Analysis and explicit actions replace a pinned accepted completion. */
  unpin(): void {
    this.pinned = null;
  }

  initOptions(): BackendInitOptions {
    const bundled = this.extension.asAbsolutePath('models');
    return {
      modelDirs: [...this.cfg.modelDirs.map(expandHome), bundled],
      defaultModel: this.activeModel ?? this.cfg.defaultModel ?? this.extension.globalState.get<string>(LAST_MODEL_KEY) ?? null,
      provider: this.cfg.provider,
      threads: this.cfg.threads,
    };
  }

  async showFailure(message: string): Promise<void> {
    const pick = await vscode.window.showErrorMessage(`VersatileFFN: ${message}`, 'Show Logs', 'Restart Backend', 'Open Settings');
    await this.handleButton(pick);
  }

  async handleButton(pick: string | undefined): Promise<void> {
    switch (pick) {
      case 'Show Logs':
        this.channel.show(true);
        return;
      case 'Restart Backend':
        await vscode.commands.executeCommand('vffn.restartBackend');
        return;
      case 'Open Settings':
        await vscode.commands.executeCommand('workbench.action.openSettings', SECTION);
        return;
      case 'Switch Model':
        await vscode.commands.executeCommand('vffn.switchModel');
        return;
      default:
        return;
    }
  }

  dispose(): void {
    clearTimeout(this.statsTimer);
    this.saveStats();
    for (const d of this.disposables.reverse()) d.dispose();
  }

  private onBackendStatus(status: BackendStatus): void {
    const wasRunning = this.lastPhase === 'running';
    this.lastPhase = status.phase;
    if (status.phase === 'running' && !wasRunning) void this.checkModels();
    this.statusBar.setBackend(status);
    const server = status.server;
    this.inspector.showStatus(statusLine(status));
    if (server?.state === 'error' && server.message && server.message !== this.lastServerError) {
      this.lastServerError = server.message;
      void vscode.window
        .showWarningMessage(`VersatileFFN: ${server.message}`, 'Switch Model', 'Show Logs', 'Open Settings')
        .then((pick) => this.handleButton(pick));
    }
    if (server?.state === 'ready') {
      this.lastServerError = null;
      if (server.model) this.activeModel = server.model;
    }
  }

  /** Right after a start: with no model folder at all, say so (and how to fix it) at once. */
  private async checkModels(): Promise<void> {
    const client = this.backend.ready;
    if (!client) return;
    try {
      const list = await client.sendRequest(ListModelsRequest, undefined);
      if (list.models.length > 0) return;
      const dirs = this.initOptions().modelDirs.join(', ');
      this.backend.noteServerStatus({
        state: 'error',
        model: null,
        provider: null,
        message: `No model found in ${dirs}. Add a folder that contains model folders to "versatileffn.modelDirs".`,
      });
    } catch (err) {
      this.log(`listing models: ${errorText(err)}`);
    }
  }

  private onCompletion(result: CompleteResult, roundTripMs: number | null): void {
    if (!result || typeof result.requestId !== 'string') return;
    const empty = !result.tokens || result.tokens.length === 0;
    if (empty && (result.stopReason === 'cancelled' || result.stopReason === 'superseded')) return;
    this.tokensById.set(result.requestId, result);
    const client = this.clientTimings.peek(result.requestId) ?? { debounceMs: null, contextMs: null };
    try {
      const run = runFromCompletion(result, client);
      if (run.repaired > 0) this.log(`backend sent ${run.repaired} non-finite number(s) in ${run.id}; shown as 0`);
      if (!this.pinned) this.inspector.showRun(run);
    } catch (err) {
      this.log(`inspector: could not show ${result.requestId}: ${errorText(err)}`);
    }
    const t = result.timings;
    if (t) {
      const tokensPerSecond = t.decodeMs > 0 && t.generatedTokens > 1 ? ((t.generatedTokens - 1) * 1000) / t.decodeMs : null;
      this.statusBar.setLastRun({ totalMs: roundTripMs ?? t.totalMs, tokensPerSecond });
    }
    this.scheduleStats();
  }

  private scheduleStats(): void {
    if (this.statsTimer) return;
    this.statsTimer = setTimeout(() => {
      this.statsTimer = undefined;
      this.saveStats();
      void this.postStats();
    }, 1000);
  }

  async postStats(): Promise<void> {
    let backend: { model: string; decodeTokensPerSecond: number | null; latencyP50Ms: number | null }[] = [];
    const client = this.backend.ready;
    if (client) {
      try {
        const s = await client.sendRequest(StatsRequest, undefined);
        backend = Object.entries(s.perModel).map(([model, m]) => ({ model, decodeTokensPerSecond: m.decodeTokensPerSecond, latencyP50Ms: m.latencyP50Ms }));
      } catch (err) {
        this.log(`stats: ${errorText(err)}`);
      }
    }
    this.inspector.showStats({ type: 'stats', usage: this.stats.summary(), backend });
  }

  private saveStats(): void {
    void this.extension.globalState.update(STATS_KEY, this.stats.toJSON());
  }

  private async onConfigChange(e: vscode.ConfigurationChangeEvent): Promise<void> {
    if (!e.affectsConfiguration(SECTION)) return;
    const before = this.cfg;
    this.cfg = readConfig();
    this.statusBar.setEnabled(this.cfg.enabled);
    if (needsRestart(e)) {
      this.log('settings changed that need a backend restart; restarting');
      await this.backend.restart();
      return;
    }
    const client = this.backend.ready;
    if (!client) return;
    try {
      if (before.provider !== this.cfg.provider) {
        const status = await client.sendRequest(SetProviderRequest, { provider: this.cfg.provider });
        void vscode.window.showInformationMessage(`VersatileFFN runs on ${status.active ?? 'no provider'}: ${status.reason}`);
      }
      if (this.cfg.defaultModel && before.defaultModel !== this.cfg.defaultModel) {
        const r = await client.sendRequest(SwitchModelRequest, { name: this.cfg.defaultModel });
        if (!r.ok) void this.showFailure(`could not load model "${this.cfg.defaultModel}": ${r.error ?? 'unknown error'}`);
      }
    } catch (err) {
      this.log(`applying settings: ${errorText(err)}`);
    }
  }

  private runWebviewCommand(command: WebviewCommand): void {
    const ids: Record<WebviewCommand, string> = {
      analyzeSelection: 'vffn.analyzeSelection',
      switchModel: 'vffn.switchModel',
      showLogs: 'vffn.showLogs',
      restartBackend: 'vffn.restartBackend',
      compareModels: 'vffn.compareModels',
    };
    void vscode.commands.executeCommand(ids[command]);
  }
}

function statusLine(s: BackendStatus): string {
  if (s.message) return s.message;
  const server = s.server;
  if (!server) return s.phase === 'running' ? 'Backend running; waiting for its model.' : `Backend ${s.phase}.`;
  if (server.state === 'error') return `Error: ${server.message ?? 'the backend reported an error.'}`;
  if (server.loading) return describeLoading(server)!.tooltip;
  if (server.state === 'loading') return server.message ?? 'Loading a model…';
  return `${server.state === 'working' ? 'Working' : 'Ready'}: ${server.model ?? 'no model'} on ${server.provider ?? '—'}.`;
}

function expandHome(dir: string): string {
  const home = process.env.HOME ?? process.env.USERPROFILE;
  return home && dir.startsWith('~') ? home + dir.slice(1) : dir;
}
