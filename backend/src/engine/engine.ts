// The engine: loaded models, hot swap, provider choice, the request queue and counters.
// It knows nothing of LSP; the server and the CLI drive it.
import type {
  AnalyzeParams, AnalyzeResult, CompleteParams, CompleteResult, ListModelsResult, LoadStep, ModelStats, ProviderPreference,
  ProviderStatus, StatsResult, StatusParams, SwitchModelResult,
} from '../../../common/protocol';
import { emptyAnalyzeResult, emptyCompleteResult } from '../../../common/vocabulary';
import { InputError, runAnalyze, runComplete } from './completion';
import { LoadedModel, loadModel, modelInfo, releaseModel } from './loadedModel';
import { defaultModelOrder, listModelFolders } from './modelFolder';
import { availableProviders } from './providers';
import { CancelSignal, Scheduler } from './scheduler';
import { percentile } from './telemetry';

export interface EngineOptions {
  modelDirs: string[];
  provider: ProviderPreference;
  threads: number;
  log?: (msg: string) => void;
  onStatus?: (s: StatusParams) => void;
}

/** Models besides the active one kept loaded for requests that name them (Compare Models). */
const MAX_EXTRA_MODELS = 2;
const LATENCY_WINDOW = 1000;

export class Engine {
  private active: LoadedModel | null = null;
  private readonly extra = new Map<string, LoadedModel>();
  private readonly loadErrors = new Map<string, string>();
  private readonly scheduler = new Scheduler();
  private readonly counters = new Map<string, Counters>();
  private provider: ProviderPreference;
  private loadChain: Promise<unknown> = Promise.resolve();
  /** The load in progress (one at a time: loadChain), reported with every status while it lasts. */
  private loading: { model: string; step: LoadStep; startedAt: number } | null = null;
  private readonly startedAt = Date.now();
  private disposed = false;

  constructor(private readonly opts: EngineOptions) {
    this.provider = opts.provider;
  }

  get activeModel(): LoadedModel | null {
    return this.active;
  }

  /** Loads `preferred`, or the first loadable model; reports but does not throw when none loads. */
  async start(preferred: string | null): Promise<SwitchModelResult> {
    const names = defaultModelOrder(listModelFolders(this.opts.modelDirs)).map((e) => e.name);
    const order = preferred ? [preferred, ...names.filter((n) => n !== preferred)] : names;
    if (order.length === 0) {
      const error = `No model folders found in ${this.opts.modelDirs.join(', ') || '(no model dirs)'}. Set versatileffn.modelDirs or VFFN_MODEL_DIRS.`;
      this.status('error', error);
      return { ok: false, active: null, error };
    }
    let first: SwitchModelResult | null = null;
    for (const name of order) {
      const r = await this.switchModel(name);
      first ??= r;
      if (r.ok) return name === order[0] ? r : { ...r, error: first.error };
    }
    return first!;
  }

  listModels(): ListModelsResult {
    const activeName = this.active?.name ?? null;
    const models = listModelFolders(this.opts.modelDirs).map((e) => modelInfo(e, e.name === activeName, this.loadErrors.get(e.name)));
    return { active: activeName, models };
  }

  /** Hot swap: the old model serves until the new one is ready; on failure it stays and the error says why. */
  switchModel(name: string): Promise<SwitchModelResult> {
    const run = async (): Promise<SwitchModelResult> => {
      if (typeof name !== 'string' || name === '') return { ok: false, active: this.active?.name ?? null, error: 'switchModel needs a model name' };
      if (this.active?.name === name) return { ok: true, active: name, loadMs: 0 };
      const entry = listModelFolders(this.opts.modelDirs).find((e) => e.name === name);
      if (!entry) {
        return { ok: false, active: this.active?.name ?? null, error: `No model folder named "${name}" in ${this.opts.modelDirs.join(', ')}.` };
      }
      this.status('loading', `loading ${name}`);
      try {
        const loaded = this.extra.get(name) ?? (await loadModel(name, entry.path, this.provider, this.opts.threads, this.onLoadStep(name, `loading ${name}`)));
        this.loading = null;
        this.extra.delete(name);
        const old = this.active;
        this.active = loaded;
        this.loadErrors.delete(name);
        if (old) this.releaseLater(old);
        this.log(`model ${name} loaded in ${loaded.loadMs.toFixed(0)} ms on ${loaded.session.activeProvider}: ${loaded.session.provider.reason}`);
        this.log(`model ${name}: prompts up to ${loaded.promptTokens} tokens (${loaded.prefillTokensPerSecond > 0 ? `prefill measured at ${loaded.prefillTokensPerSecond.toFixed(0)} tokens/s here` : 'VFFN_MAX_PROMPT_TOKENS'})`);
        this.status('ready');
        return { ok: true, active: name, loadMs: Math.round(loaded.loadMs) };
      } catch (e) {
        this.loading = null;
        const error = (e as Error).message;
        this.loadErrors.set(name, error);
        this.log(`model ${name} failed to load: ${error}`);
        this.status(this.active ? 'ready' : 'error', `switch to ${name} failed: ${error}`);
        return { ok: false, active: this.active?.name ?? null, error };
      }
    };
    const p = this.loadChain.then(run, run);
    this.loadChain = p;
    return p;
  }

  complete(params: CompleteParams, signal?: CancelSignal): Promise<CompleteResult> {
    const key = `complete:${params?.model ?? this.active?.name ?? ''}`;
    const provider = () => this.active?.session.activeProvider ?? 'cpu';
    const name = () => params?.model ?? this.active?.name ?? '';
    return this.scheduler.submit(key, signal, async (ctl) => {
      const c = this.count(name());
      c.requests++;
      let model: LoadedModel;
      try {
        model = await this.modelFor(params?.model);
      } catch (e) {
        c.errors++;
        return emptyCompleteResult(params, name(), provider(), 'error', (e as Error).message);
      }
      this.status('working');
      try {
        const r = await runComplete(model, params, ctl);
        this.record(c, r);
        this.status('ready', `${Math.round(r.timings.totalMs)} ms`);
        return r;
      } catch (e) {
        c.errors++;
        if (!(e instanceof InputError)) await this.recover(model, e);
        this.status('ready', (e as Error).message);
        return emptyCompleteResult(params, model.name, model.session.activeProvider, 'error', (e as Error).message);
      }
    }, (why, arrivedAt) => {
      const c = this.count(name());
      c.requests++;
      c.cancelled++;
      const r = emptyCompleteResult(params, name(), provider(), why);
      r.timings = { ...r.timings, totalMs: performance.now() - arrivedAt };
      return r;
    });
  }

  analyze(params: AnalyzeParams, signal?: CancelSignal): Promise<AnalyzeResult> {
    const fail = (error: string): AnalyzeResult => emptyAnalyzeResult(params?.model ?? this.active?.name ?? '', error);
    return this.scheduler.submit(null, signal, async (ctl) => {
      try {
        const model = await this.modelFor(params?.model);
        return await runAnalyze(model, params, ctl);
      } catch (e) {
        return fail((e as Error).message);
      }
    }, (why) => fail(why));
  }

  /** A cancellation arrived: waiting requests it ends get their result now. */
  poke(): void {
    this.scheduler.poke();
  }

  providerStatus(): ProviderStatus {
    if (this.active) return this.active.session.provider;
    return { requested: this.provider, active: null, available: availableProviders(), tried: [], reason: 'no model is loaded yet' };
  }

  /** Reloads the active model on the chosen provider (falling back to cpu); the old session serves meanwhile. */
  async setProvider(pref: ProviderPreference): Promise<ProviderStatus> {
    this.provider = pref;
    const current = this.active;
    if (!current) return this.providerStatus();
    for (const m of this.extra.values()) this.releaseLater(m);
    this.extra.clear();
    const reload = async () => {
      this.status('loading', `switching provider to ${pref}`);
      try {
        const loaded = await loadModel(current.name, current.dir, pref, this.opts.threads, this.onLoadStep(current.name, `switching provider to ${pref}`));
        this.loading = null;
        if (this.active === current) {
          this.active = loaded;
          this.releaseLater(current);
        } else {
          this.releaseLater(loaded);
        }
        this.status('ready');
      } catch (e) {
        this.loading = null;
        this.log(`provider ${pref} failed: ${(e as Error).message}`);
        this.status('ready', `provider ${pref} failed: ${(e as Error).message}`);
      }
    };
    const p = this.loadChain.then(reload, reload);
    this.loadChain = p;
    await p;
    return this.providerStatus();
  }

  stats(): StatsResult {
    const perModel: Record<string, ModelStats> = {};
    for (const [name, c] of this.counters) {
      const sorted = [...c.latencies].sort((a, b) => a - b);
      perModel[name] = {
        requests: c.requests, completed: c.completed, cancelled: c.cancelled, errors: c.errors,
        latencyP50Ms: percentile(sorted, 50), latencyP95Ms: percentile(sorted, 95),
        decodeTokensPerSecond: c.decodeMs > 0 ? (c.decodeTokens / c.decodeMs) * 1000 : null,
      };
    }
    return { perModel, rssBytes: process.memoryUsage.rss(), uptimeMs: Date.now() - this.startedAt };
  }

  async dispose(): Promise<void> {
    this.disposed = true;
    await this.loadChain.catch(() => undefined);
    const all = [...this.extra.values(), ...(this.active ? [this.active] : [])];
    this.active = null;
    this.extra.clear();
    for (const m of all) await releaseModel(m).catch(() => undefined);
  }

  private async modelFor(name: string | undefined): Promise<LoadedModel> {
    if (this.disposed) throw new Error('the backend is shutting down');
    if (!name || name === this.active?.name) {
      if (!this.active) throw new Error('No model is loaded. Pick one with "VersatileFFN: Switch Model".');
      return this.active;
    }
    const cached = this.extra.get(name);
    if (cached) return cached;
    const entry = listModelFolders(this.opts.modelDirs).find((e) => e.name === name);
    if (!entry) throw new Error(`No model folder named "${name}".`);
    const loaded = await loadModel(name, entry.path, this.provider, this.opts.threads);
    this.extra.set(name, loaded);
    while (this.extra.size > MAX_EXTRA_MODELS) {
      const [oldest, m] = this.extra.entries().next().value as [string, LoadedModel];
      this.extra.delete(oldest);
      await releaseModel(m);
    }
    return loaded;
  }

  /** After a failed step the cache may not match the session; on a GPU provider, fall back to cpu. */
  private async recover(model: LoadedModel, e: unknown): Promise<void> {
    this.log(`inference failed on ${model.name}: ${(e as Error).stack ?? e}`);
    model.cache.clear();
    if (model.session.activeProvider !== 'cpu' && model === this.active) {
      this.log('falling back to cpu after a provider failure');
      void this.setProvider('cpu');
    }
  }

  /** Releases a model once the request running now (which may use it) is done. */
  private releaseLater(m: LoadedModel): void {
    void this.scheduler.submit(null, undefined, () => releaseModel(m), () => undefined).catch(() => undefined);
  }

  private count(name: string): Counters {
    let c = this.counters.get(name);
    if (!c) {
      c = { requests: 0, completed: 0, cancelled: 0, errors: 0, latencies: [], decodeTokens: 0, decodeMs: 0 };
      this.counters.set(name, c);
    }
    return c;
  }

  private record(c: Counters, r: CompleteResult): void {
    if (r.stopReason === 'cancelled' || r.stopReason === 'superseded') {
      c.cancelled++;
      return;
    }
    c.completed++;
    c.latencies.push(r.timings.totalMs);
    if (c.latencies.length > LATENCY_WINDOW) c.latencies.shift();
    if (r.timings.generatedTokens > 1) {
      c.decodeTokens += r.timings.generatedTokens - 1;
      c.decodeMs += r.timings.decodeMs;
    }
  }

  /** Marks a load of `model` as begun; each step it reports goes out as a 'loading' status. */
  private onLoadStep(model: string, what: string): (step: LoadStep) => void {
    const startedAt = Date.now();
    return (step) => {
      this.loading = { model, step, startedAt };
      this.status('loading', `${what}: ${step}`);
    };
  }

  private status(state: StatusParams['state'], message?: string): void {
    const s: StatusParams = { state, model: this.active?.name ?? null, provider: this.active?.session.activeProvider ?? null, message };
    const l = this.loading;
    if (l) s.loading = { model: l.model, step: l.step, elapsedMs: Date.now() - l.startedAt };
    this.opts.onStatus?.(s);
  }

  private log(msg: string): void {
    this.opts.log?.(msg);
  }
}

interface Counters {
  requests: number;
  completed: number;
  cancelled: number;
  errors: number;
  latencies: number[];
  decodeTokens: number;
  decodeMs: number;
}
