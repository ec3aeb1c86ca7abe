// The model registry: the active model, the extra models requests may name (Compare Models), the
// load chain (one load at a time), hot swap, provider change and the deferred release of old models.
import type { ListModelsResult, LoadStep, ProviderPreference, ProviderStatus, StatusParams, SwitchModelResult } from '../../../common/protocol';
import { LoadedModel, loadModel, modelInfo, releaseModel } from './loadedModel';
import { defaultModelOrder, listModelFolders } from './modelFolder';
import { availableProviders } from './providers';
import type { Scheduler } from './scheduler';

export interface RegistryOptions {
  modelDirs: string[];
  provider: ProviderPreference;
  threads: number;
  log?: (msg: string) => void;
  onStatus?: (s: StatusParams) => void;
}

/** Models besides the active one kept loaded for requests that name them (Compare Models). */
const MAX_EXTRA_MODELS = 2;

export class ModelRegistry {
  private active: LoadedModel | null = null;
  private readonly extra = new Map<string, LoadedModel>();
  private readonly loadErrors = new Map<string, string>();
  private provider: ProviderPreference;
  private loadChain: Promise<unknown> = Promise.resolve();
  /** The load in progress (one at a time: loadChain), reported with every status while it lasts. */
  private loading: { model: string; step: LoadStep; startedAt: number } | null = null;
  private disposed = false;

  /** `scheduler` runs the deferred releases after the request running now. */
  constructor(private readonly opts: RegistryOptions, private readonly scheduler: Scheduler) {
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

  /** The model a request names (loaded as an extra model when it is not the active one), or the active one. */
  async modelFor(name: string | undefined): Promise<LoadedModel> {
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

  async dispose(): Promise<void> {
    this.disposed = true;
    await this.loadChain.catch(() => undefined);
    const all = [...this.extra.values(), ...(this.active ? [this.active] : [])];
    this.active = null;
    this.extra.clear();
    for (const m of all) await releaseModel(m).catch(() => undefined);
  }

  /** Sends a status (the active model, its provider, and the load in progress if any). */
  status(state: StatusParams['state'], message?: string): void {
    const s: StatusParams = { state, model: this.active?.name ?? null, provider: this.active?.session.activeProvider ?? null, message };
    const l = this.loading;
    if (l) s.loading = { model: l.model, step: l.step, elapsedMs: Date.now() - l.startedAt };
    this.opts.onStatus?.(s);
  }

  /** Releases a model once the request running now (which may use it) is done. */
  private releaseLater(m: LoadedModel): void {
    void this.scheduler.submit(null, undefined, () => releaseModel(m), () => undefined).catch(() => undefined);
  }

  /** Marks a load of `model` as begun; each step it reports goes out as a 'loading' status. */
  private onLoadStep(model: string, what: string): (step: LoadStep) => void {
    const startedAt = Date.now();
    return (step) => {
      this.loading = { model, step, startedAt };
      this.status('loading', `${what}: ${step}`);
    };
  }

  private log(msg: string): void {
    this.opts.log?.(msg);
  }
}
