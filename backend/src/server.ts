// The language server: wires the protocol's requests to the engine. It computes nothing itself;
// every handler stops errors at the boundary (log, status, empty result with `error`). The engine
// runs in a worker thread behind EngineHost, so loading and inference never block this thread.
import { createConnection, InitializeResult } from 'vscode-languageserver/node';
import {
  AnalyzeRequest, BackendInitOptions, CompleteParams, CompletePartial, CompletePartialProgress, CompleteRequest, CompletionTelemetryNotification, ListModelsRequest,
  PrefillRequest, ProviderStatusRequest, SetProviderRequest, StatsRequest, StatusNotification, SwitchModelRequest, SwitchModelResult,
} from '../../common/protocol';
import { emptyAnalyzeResult, emptyCompleteResult, emptyPrefillResult, isProviderPreference, PROVIDER_PREFERENCES } from '../../common/vocabulary';
import { resolveModelDirs } from './engine/modelFolder';
import { EngineHost } from './engineHost';

const connection = createConnection();
let engine: EngineHost | null = null;
let defaultModel: string | null = null;

const log = (msg: string) => connection.console.log(`[vffn] ${msg}`);

process.on('uncaughtException', (e) => log(`uncaught exception (the backend keeps running): ${e.stack ?? e}`));
process.on('unhandledRejection', (e) => log(`unhandled rejection (the backend keeps running): ${(e as Error)?.stack ?? e}`));

/** Runs a handler; any throw becomes `fallback(message)` and a log line, never a dead server. */
async function guard<T>(name: string, fallback: (error: string) => T, fn: (e: EngineHost) => Promise<T> | T): Promise<T> {
  try {
    if (!engine) return fallback('the backend is not initialized yet');
    return await fn(engine);
  } catch (e) {
    const message = (e as Error)?.message ?? String(e);
    log(`${name} failed: ${(e as Error)?.stack ?? e}`);
    return fallback(message);
  }
}

connection.onInitialize((params): InitializeResult => {
  const init = (params.initializationOptions ?? {}) as Partial<BackendInitOptions>;
  const provider = isProviderPreference(init.provider) ? init.provider : 'auto';
  engine = new EngineHost({
    modelDirs: resolveModelDirs(init.modelDirs, __dirname),
    provider,
    threads: typeof init.threads === 'number' && init.threads > 0 ? init.threads : 0,
    log,
    onStatus: (s) => void connection.sendNotification(StatusNotification, s),
  });
  defaultModel = typeof init.defaultModel === 'string' ? init.defaultModel : null;
  return { capabilities: {}, serverInfo: { name: 'vffn-backend', version: '0.1.0' } };
});

// The model loads after the handshake, so status notifications never precede the initialize result.
connection.onInitialized(() => {
  void engine?.start(defaultModel).then((r) => {
    if (!r.ok || r.error) log(`start: ${r.error ?? 'no model loaded'}`);
  });
});

connection.onRequest(CompleteRequest, (params, token) => {
  const fail = (error: string) => emptyCompleteResult(params ?? ({ requestId: '' } as CompleteParams), params?.model ?? '', 'cpu', 'error', error);
  return guard('complete', fail, async (e) => {
    const partialToken = params?.partialResultToken;
    const onPartial = partialToken === undefined ? undefined
      : (p: CompletePartial) => void connection.sendProgress(CompletePartialProgress, partialToken, p);
    const r = await e.complete(params, token, onPartial);
    if (r.stopReason !== 'cancelled' && r.stopReason !== 'superseded' && !r.error) {
      void connection.sendNotification(CompletionTelemetryNotification, r);
    }
    return r;
  });
});

connection.onRequest(PrefillRequest, (params, token) => {
  return guard('prefill', (error) => emptyPrefillResult(params, params?.model ?? '', 'error', error), (e) => e.prefill(params, token));
});

connection.onRequest(AnalyzeRequest, (params, token) => {
  return guard('analyze', (error) => emptyAnalyzeResult('', error), (e) => e.analyze(params, token));
});

connection.onRequest(ListModelsRequest, () => guard('listModels', () => ({ active: null, models: [] }), (e) => e.listModels()));

connection.onRequest(SwitchModelRequest, (params) =>
  guard('switchModel', (error): SwitchModelResult => ({ ok: false, active: engine?.activeModel?.name ?? null, error }), (e) => e.switchModel(params?.name)));

connection.onRequest(ProviderStatusRequest, () =>
  guard('providerStatus', (error) => ({ requested: 'auto' as const, active: null, available: [], tried: [], reason: error }), (e) => e.providerStatus()));

connection.onRequest(SetProviderRequest, (params) =>
  guard('setProvider', (error) => ({ requested: 'auto' as const, active: null, available: [], tried: [], reason: error }), (e) => {
    if (!isProviderPreference(params?.provider)) throw new Error(`unknown provider ${JSON.stringify(params?.provider)}; use one of ${PROVIDER_PREFERENCES.join(', ')}`);
    return e.setProvider(params.provider);
  }));

connection.onRequest(StatsRequest, () =>
  guard('stats', () => ({ perModel: {}, rssBytes: process.memoryUsage.rss(), uptimeMs: 0 }), (e) => e.stats()));

connection.onShutdown(async () => {
  await engine?.dispose();
  engine = null;
});

connection.listen();
