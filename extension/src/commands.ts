// The commands of the "VersatileFFN" category. Each talks to the backend through the
// context; failures end in a message with a next step, never in an unhandled rejection.
import * as vscode from 'vscode';
import {
  AnalyzeRequest,
  CompleteRequest,
  ListModelsRequest,
  ProviderStatusRequest,
  SwitchModelRequest,
  type CompleteParams,
  type ModelInfo,
  type ProviderPreference,
} from '../../common/protocol';
import { EXECUTION_PROVIDERS } from '../../common/vocabulary';
import type { InspectedRun } from '../../common/webview';
import { errorText } from './backend';
import { isAcceptedArgs } from './completion/accepted';
import { textAround } from './completion/text';
import { SECTION } from './config';
import { LAST_MODEL_KEY, type Ctx } from './ctx';
import { ComparePanel } from './inspector/compare';
import { runFromAnalysis, runFromCompletion } from './inspector/runs';

export function registerCommands(ctx: Ctx): vscode.Disposable[] {
  const commands: Record<string, (...args: unknown[]) => unknown> = {
    'vffn.switchModel': () => switchModel(ctx),
    'vffn.selectProvider': () => selectProvider(ctx),
    'vffn.toggleCompletions': () => toggleCompletions(ctx),
    'vffn.showInspector': () => ctx.inspector.reveal(),
    'vffn.analyzeSelection': () => analyzeSelection(ctx),
    'vffn.compareModels': () => compareModels(ctx),
    'vffn.restartBackend': () => ctx.backend.restart(),
    'vffn.showLogs': () => ctx.channel.show(true),
    'vffn.statusMenu': () => statusMenu(),
    'vffn.accepted': (args) => accepted(ctx, args),
  };
  return Object.entries(commands).map(([id, fn]) =>
    vscode.commands.registerCommand(id, async (...args: unknown[]) => {
      try {
        return await fn(...args);
      } catch (err) {
        ctx.log(`${id} failed: ${errorText(err)}`);
        const pick = await vscode.window.showErrorMessage(`VersatileFFN: ${id} failed: ${errorText(err)}`, 'Show Logs', 'Restart Backend');
        await ctx.handleButton(pick);
        return undefined;
      }
    }),
  );
}

/** The running client, or a message saying why there is none (and undefined). */
function clientOrExplain(ctx: Ctx) {
  const client = ctx.backend.ready;
  if (client) return client;
  const status = ctx.backend.status;
  const why = status.message ?? `the backend is ${status.phase}`;
  void vscode.window.showWarningMessage(`VersatileFFN: not available — ${why}`, 'Show Logs', 'Restart Backend').then((p) => ctx.handleButton(p));
  return undefined;
}

async function switchModel(ctx: Ctx): Promise<void> {
  const client = clientOrExplain(ctx);
  if (!client) return;
  const list = await client.sendRequest(ListModelsRequest, undefined);
  if (list.models.length === 0) {
    const pick = await vscode.window.showWarningMessage(
      'VersatileFFN: no model folders found. Add a folder that contains model folders to "versatileffn.modelDirs".',
      'Open Settings', 'Show Logs');
    await ctx.handleButton(pick);
    return;
  }
  type Item = vscode.QuickPickItem & { model: ModelInfo };
  const items: Item[] = list.models.map((m) => ({
    label: `${m.active ? '$(check) ' : ''}${m.name}`,
    description: `${m.kind} · ${formatCount(m.parameters)} params · ${formatBytes(m.diskBytes)} on disk${m.active ? ' · active' : ''}`,
    detail: m.loadError
      ? `$(warning) cannot load: ${m.loadError}`
      : `${m.displayName} — ${m.nLayer} layers × d${m.dModel} · memory ≈ ${formatBytes(m.diskBytes * 1.3)} (est.) · ${formatMetrics(m.metrics)}`,
    model: m,
  }));
  const picked = await vscode.window.showQuickPick(items, {
    title: 'VersatileFFN: Switch Model',
    placeHolder: `Active: ${list.active ?? 'none'} — the swap is hot, the current model serves until the new one is ready`,
    matchOnDescription: true,
    matchOnDetail: true,
  });
  if (!picked || picked.model.active) return;
  const result = await vscode.window.withProgress(
    { location: vscode.ProgressLocation.Notification, title: `VersatileFFN: loading ${picked.model.name}…` },
    () => client.sendRequest(SwitchModelRequest, { name: picked.model.name }),
  );
  if (!result.ok) {
    const pick = await vscode.window.showErrorMessage(
      `VersatileFFN: could not load ${picked.model.name}: ${result.error ?? 'unknown error'}. ${result.active ?? 'No model'} stays active.`,
      'Show Logs', 'Switch Model');
    await ctx.handleButton(pick);
    return;
  }
  await ctx.extension.globalState.update(LAST_MODEL_KEY, picked.model.name);
  const ms = result.loadMs !== undefined ? ` in ${Math.round(result.loadMs)} ms` : '';
  void vscode.window.showInformationMessage(`VersatileFFN: switched to ${result.active ?? picked.model.name}${ms}.`);
}

async function selectProvider(ctx: Ctx): Promise<void> {
  const client = clientOrExplain(ctx);
  if (!client) return;
  const status = await client.sendRequest(ProviderStatusRequest, undefined);
  type Item = vscode.QuickPickItem & { provider: ProviderPreference };
  const items: Item[] = [
    { label: `${status.requested === 'auto' ? '$(check) ' : ''}auto`, description: 'the fastest available, falling back to CPU', provider: 'auto' },
    ...EXECUTION_PROVIDERS.map((p) => {
      const tried = status.tried.find((t) => t.provider === p);
      const available = status.available.includes(p);
      return {
        label: `${status.requested === p ? '$(check) ' : ''}${p}`,
        description: `${p === status.active ? 'running · ' : ''}${available ? 'available here' : 'not in this build/platform'}`,
        detail: tried && !tried.ok ? `$(warning) failed: ${tried.error ?? 'unknown'}` : undefined,
        provider: p,
      };
    }),
  ];
  const picked = await vscode.window.showQuickPick(items, {
    title: 'VersatileFFN: Select Execution Provider',
    placeHolder: `Running on ${status.active ?? 'none'}: ${status.reason}`,
  });
  if (!picked) return;
  // The settings listener sends the change to the backend and reports the outcome.
  await vscode.workspace.getConfiguration(SECTION).update('provider', picked.provider, vscode.ConfigurationTarget.Global);
}

async function toggleCompletions(ctx: Ctx): Promise<void> {
  const next = !ctx.config.enabled;
  await vscode.workspace.getConfiguration(SECTION).update('enable', next, vscode.ConfigurationTarget.Global);
  void vscode.window.setStatusBarMessage(`VersatileFFN completions ${next ? 'on' : 'off'}`, 2000);
}

async function analyzeSelection(ctx: Ctx): Promise<void> {
  const editor = vscode.window.activeTextEditor;
  if (!editor) {
    void vscode.window.showInformationMessage('VersatileFFN: open a file and select some code to analyze.');
    return;
  }
  const selection = editor.selection.isEmpty ? editor.document.lineAt(editor.selection.active.line).range : editor.selection;
  const text = editor.document.getText(selection).slice(0, 8000);
  if (text.trim().length === 0) {
    void vscode.window.showInformationMessage('VersatileFFN: the selection is empty; select some code to analyze.');
    return;
  }
  const client = clientOrExplain(ctx);
  if (!client) return;
  const result = await client.sendRequest(AnalyzeRequest, { text, languageId: editor.document.languageId });
  if (result.error) {
    void vscode.window.showWarningMessage(`VersatileFFN: analysis failed: ${result.error}`, 'Show Logs').then((p) => ctx.handleButton(p));
  }
  ctx.feed.unpin();
  ctx.inspector.showRun(runFromAnalysis(`a-${Date.now().toString(36)}`, text, result, ctx.backend.status.server?.provider ?? null));
  await ctx.inspector.reveal();
}

async function compareModels(ctx: Ctx): Promise<void> {
  const editor = vscode.window.activeTextEditor;
  if (!editor) {
    void vscode.window.showInformationMessage('VersatileFFN: put the cursor where you want a completion, then compare.');
    return;
  }
  const client = clientOrExplain(ctx);
  if (!client) return;
  const list = await client.sendRequest(ListModelsRequest, undefined);
  const loadable = list.models.filter((m) => !m.loadError);
  if (loadable.length < 2) {
    void vscode.window.showInformationMessage(`VersatileFFN: comparing needs two loadable models; found ${loadable.length}. Add model folders in "versatileffn.modelDirs".`, 'Open Settings').then((p) => ctx.handleButton(p));
    return;
  }
  const pick = async (step: number, exclude?: string) => {
    const items = loadable.filter((m) => m.name !== exclude).map((m) => ({ label: m.name, description: `${m.kind} · ${formatCount(m.parameters)} params`, name: m.name }));
    return (await vscode.window.showQuickPick(items, { title: `VersatileFFN: Compare Models (${step}/2)` }))?.name;
  };
  const first = await pick(1);
  if (!first) return;
  const second = await pick(2, first);
  if (!second) return;
  const { prefix, prefixOffset, suffix } = textAround(editor.document, editor.selection.active, ctx.config);
  const base: Omit<CompleteParams, 'requestId' | 'model'> = {
    uri: editor.document.uri.toString(),
    languageId: editor.document.languageId,
    prefix,
    prefixOffset,
    suffix,
    maxTokens: ctx.config.maxTokens,
    maxTimeMs: Math.max(ctx.config.maxTimeMs, 5000),
    temperature: 0,
  };
  const runs: InspectedRun[] = [];
  // One after the other: the backend lets a newer completion request supersede an older one.
  for (const model of [first, second]) {
    const result = await vscode.window.withProgress(
      { location: vscode.ProgressLocation.Window, title: `VersatileFFN: completing with ${model}` },
      () => client.sendRequest(CompleteRequest, { ...base, requestId: `cmp-${model}-${Date.now().toString(36)}`, model }),
    );
    runs.push(runFromCompletion(result, { debounceMs: null, contextMs: null }, 'compare'));
  }
  ComparePanel.show(ctx.extension.extensionUri, runs, (l) => ctx.log(l), (c) => void vscode.commands.executeCommand(`vffn.${c}`));
}

async function statusMenu(): Promise<void> {
  const items = [
    { label: '$(versions) Switch Model', command: 'vffn.switchModel' },
    { label: '$(chip) Select Execution Provider', command: 'vffn.selectProvider' },
    { label: '$(circle-slash) Toggle Completions', command: 'vffn.toggleCompletions' },
    { label: '$(graph) Show Routing Inspector', command: 'vffn.showInspector' },
    { label: '$(split-horizontal) Compare Models', command: 'vffn.compareModels' },
    { label: '$(debug-restart) Restart Backend', command: 'vffn.restartBackend' },
    { label: '$(output) Show Logs', command: 'vffn.showLogs' },
  ];
  const picked = await vscode.window.showQuickPick(items, { title: 'VersatileFFN' });
  if (picked) await vscode.commands.executeCommand(picked.command);
}

function accepted(ctx: Ctx, raw: unknown): void {
  if (!isAcceptedArgs(raw)) {
    ctx.log('vffn.accepted called without valid arguments; ignored');
    return;
  }
  const editor = vscode.window.activeTextEditor;
  const document = editor && editor.document.uri.toString() === raw.uri ? editor.document : undefined;
  const result = ctx.accepted(raw.requestId, raw.model, document);
  void ctx.usage.post();
  if (!ctx.config.tintAccepted || !result) return;
  if (editor && document) {
    ctx.tint.show(editor, new vscode.Position(raw.line, raw.character), raw.text, result.tokens);
  }
}

export function formatBytes(n: number): string {
  if (!Number.isFinite(n) || n <= 0) return '? MB';
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(0)} KB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MB`;
  return `${(n / 1024 ** 3).toFixed(2)} GB`;
}

export function formatCount(n: number): string {
  if (!Number.isFinite(n) || n <= 0) return '?';
  if (n < 1e6) return `${(n / 1e3).toFixed(0)}k`;
  return `${(n / 1e6).toFixed(1)}M`;
}

function formatMetrics(metrics: Record<string, number | null>): string {
  const parts = Object.entries(metrics ?? {})
    .filter(([, v]) => typeof v === 'number')
    .map(([k, v]) => `${k} ${(v as number).toFixed(3)}`);
  return parts.length > 0 ? parts.join(' · ') : 'no quality metrics';
}
