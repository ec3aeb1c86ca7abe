// The one context object: it owns the backend, the status bar, the completion provider, the
// inspector and everything that must be disposed with them, and wires them together. The
// jobs live in their own modules: settings (config.ts), the inspector's feed of runs
// (inspector/feed.ts), usage statistics (stats.ts), status text (statusBar.ts). Commands
// receive the context; nothing else holds global state.
import * as vscode from 'vscode';
import {
  ListModelsRequest,
  SetProviderRequest,
  StatsRequest,
  SwitchModelRequest,
  type BackendInitOptions,
  type CompleteResult,
} from '../../common/protocol';
import { decodeTokensPerSecond } from '../../common/vocabulary';
import type { BackendModelStats, WebviewCommand } from '../../common/webview';
import { Backend, errorText, type BackendStatus } from './backend';
import { CompletionCache } from './completion/cache';
import { IdlePrefill } from './completion/prefill';
import { InlineProvider } from './completion/provider';
import { RecentContext } from './completion/recent';
import { ChunkRing } from './completion/ringBuffer';
import { backendInitOptions, ConfigWatcher, SECTION, type Config, type ConfigChange } from './config';
import { DifficultyTint } from './decorations';
import { InspectorFeed } from './inspector/feed';
import { InspectorView, VIEW_ID } from './inspector/view';
import { createLogChannel } from './logs';
import { StatsPublisher, UsageStats } from './stats';
import { StatusBar, statusLine } from './statusBar';

const STATS_KEY = 'vffn.usageStats';
export const LAST_MODEL_KEY = 'vffn.lastModel';

export class Ctx implements vscode.Disposable {
  readonly channel = createLogChannel();
  readonly statusBar = new StatusBar();
  readonly stats: UsageStats;
  readonly usage: StatsPublisher;
  readonly backend: Backend;
  readonly inspector: InspectorView;
  readonly feed: InspectorFeed;
  readonly tint = new DifficultyTint();
  private readonly settings = new ConfigWatcher();
  private readonly cache: CompletionCache;
  private readonly ring: ChunkRing;
  private prefill: IdlePrefill | undefined;
  /** Whether the running backend has reported a model ready (before that a prefill could only fail). */
  private modelReady = false;
  private readonly disposables: vscode.Disposable[] = [];
  private lastServerError: string | null = null;
  /** The model the backend last reported as loaded: a restart after a crash loads it again. */
  private activeModel: string | null = null;
  private lastPhase: BackendStatus['phase'] = 'stopped';

  constructor(readonly extension: vscode.ExtensionContext) {
    this.stats = UsageStats.fromJSON(extension.globalState.get(STATS_KEY));
    this.cache = new CompletionCache(this.config.cacheSize);
    this.ring = new ChunkRing({ capacity: this.config.contextChunks.count, duplicateThreshold: 0.9 });
    this.backend = new Backend({
      serverModule: extension.asAbsolutePath('dist/server.js'),
      channel: this.channel,
      initOptions: () => this.initOptions(),
      maxCrashes: () => this.config.maxCrashes,
    });
    this.inspector = new InspectorView(extension.extensionUri, (l) => this.log(l), (c) => this.runWebviewCommand(c));
    this.feed = new InspectorFeed(this.inspector, (l) => this.log(l));
    this.usage = new StatsPublisher({
      stats: this.stats,
      save: (json) => void this.extension.globalState.update(STATS_KEY, json),
      backendStats: () => this.backendStats(),
      show: (usage, backend) => this.inspector.showStats({ type: 'stats', usage, backend }),
    });
  }

  get config(): Config {
    return this.settings.current;
  }

  /** Registers everything and starts the backend; failures here are shown, not thrown. */
  async activate(): Promise<void> {
    const prefill = (this.prefill = new IdlePrefill({ backend: this.backend, config: () => this.config, ring: this.ring, log: (l) => this.log(l), modelReady: () => this.modelReady,
      onStart: () => this.statusBar.prefillStarted(), onEnd: (r) => this.statusBar.prefillEnded(r) }));
    const provider = new InlineProvider({
      backend: this.backend,
      config: () => this.config,
      cache: this.cache,
      ring: this.ring,
      stats: this.stats,
      log: (l) => this.log(l),
      onSent: (id, timings) => this.feed.sent(id, timings),
      onResult: (result, roundTripMs) => this.onCompletion(result, roundTripMs),
      onPlaceAsked: (place) => prefill.requested(place),
    });
    this.disposables.push(
      this.channel,
      this.statusBar,
      this.backend,
      this.inspector,
      this.tint,
      new RecentContext(this.ring, () => this.config),
      prefill,
      vscode.languages.registerInlineCompletionItemProvider({ pattern: '**' }, provider),
      vscode.window.registerWebviewViewProvider(VIEW_ID, this.inspector, { webviewOptions: { retainContextWhenHidden: true } }),
      this.settings.listen((change) => void this.onConfigChange(change)),
      this.backend.onStatus((s) => this.onBackendStatus(s)),
      this.backend.onTelemetry((r) => this.onCompletion(r, null)),
      this.backend.onFailed((message) => void this.showFailure(message)),
      this.feed,
    );
    this.statusBar.setEnabled(this.config.enabled);
    void this.usage.post();
    await this.backend.start();
  }

  log(line: string): void {
    this.channel.appendLine(`[extension] ${line}`);
  }

  /** Records an accepted completion (the command attached to each item runs this) and shows it, pinned. */
  accepted(requestId: string, model: string, document: vscode.TextDocument | undefined): CompleteResult | undefined {
    this.stats.accepted(model);
    this.usage.save();
    return this.feed.accepted(requestId, document);
  }

  initOptions(): BackendInitOptions {
    return backendInitOptions(this.config, this.extension.asAbsolutePath('models'), {
      running: this.activeModel,
      lastChosen: this.extension.globalState.get<string>(LAST_MODEL_KEY),
    });
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
    this.usage.dispose();
    for (const d of this.disposables.reverse()) d.dispose();
  }

  private onBackendStatus(status: BackendStatus): void {
    const wasRunning = this.lastPhase === 'running';
    this.lastPhase = status.phase;
    if (status.phase === 'running' && !wasRunning) {
      this.modelReady = false;   // a new backend process: its KV caches are empty
      void this.checkModels();
    }
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
      // A model became ready (the first, a restarted backend's, another one): its caches are empty, so the
      // place the cursor is at is read again.
      if (server.model && (server.model !== this.activeModel || !this.modelReady)) {
        this.modelReady = true;
        this.prefill?.forget();
        this.prefill?.kick();
      }
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
    if (!this.feed.completed(result)) return;
    const t = result.timings;
    if (t) {
      this.statusBar.setLastRun({ totalMs: roundTripMs ?? t.totalMs, tokensPerSecond: decodeTokensPerSecond(t) });
    }
    this.usage.schedule();
  }

  private async backendStats(): Promise<BackendModelStats[]> {
    const client = this.backend.ready;
    if (!client) return [];
    try {
      const s = await client.sendRequest(StatsRequest, undefined);
      return Object.entries(s.perModel).map(([model, m]) => ({ model, decodeTokensPerSecond: m.decodeTokensPerSecond, latencyP50Ms: m.latencyP50Ms }));
    } catch (err) {
      this.log(`stats: ${errorText(err)}`);
      return [];
    }
  }

  /** Applies changed settings: a restart for what the running backend cannot pick up, else requests. */
  private async onConfigChange({ before, after, restart }: ConfigChange): Promise<void> {
    this.statusBar.setEnabled(after.enabled);
    if (restart) {
      this.log('settings changed that need a backend restart; restarting');
      await this.backend.restart();
      return;
    }
    const client = this.backend.ready;
    if (!client) return;
    try {
      if (before.provider !== after.provider) {
        const status = await client.sendRequest(SetProviderRequest, { provider: after.provider });
        void vscode.window.showInformationMessage(`VersatileFFN runs on ${status.active ?? 'no provider'}: ${status.reason}`);
      }
      if (after.defaultModel && before.defaultModel !== after.defaultModel) {
        const r = await client.sendRequest(SwitchModelRequest, { name: after.defaultModel });
        if (!r.ok) void this.showFailure(`could not load model "${after.defaultModel}": ${r.error ?? 'unknown error'}`);
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
