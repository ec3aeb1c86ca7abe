// The engine: the request queue in front of the model registry (registry.ts: loaded models, hot swap,
// provider choice) and the per-model counters (telemetry.ts). It knows nothing of LSP; the server and
// the CLI drive it.
import type {
  AnalyzeParams, AnalyzeResult, CompleteParams, CompleteResult, ListModelsResult, PrefillResult, ProviderPreference,
  ProviderStatus, StatsResult, SwitchModelResult,
} from '../../../common/protocol';
import { emptyAnalyzeResult, emptyCompleteResult, emptyPrefillResult } from '../../../common/vocabulary';
import { InputError, type PartialSink, runAnalyze, runComplete } from './completion';
import type { LoadedModel } from './loadedModel';
import { runPrefill } from './prefill';
import { ModelRegistry, type RegistryOptions } from './registry';
import { CancelSignal, Scheduler } from './scheduler';
import { RequestCounters } from './telemetry';

/** What the engine needs is what its registry needs: folders, provider, threads, log and status. */
export type EngineOptions = RegistryOptions;

export class Engine {
  private readonly scheduler = new Scheduler();
  private readonly models: ModelRegistry;
  private readonly counters = new RequestCounters();
  private readonly startedAt = Date.now();

  constructor(private readonly opts: EngineOptions) {
    this.models = new ModelRegistry(opts, this.scheduler);
  }

  get activeModel(): LoadedModel | null {
    return this.models.activeModel;
  }

  /** Loads `preferred`, or the first loadable model; reports but does not throw when none loads. */
  start(preferred: string | null): Promise<SwitchModelResult> {
    return this.models.start(preferred);
  }

  listModels(): ListModelsResult {
    return this.models.listModels();
  }

  /** Hot swap: the old model serves until the new one is ready; on failure it stays and the error says why. */
  switchModel(name: string): Promise<SwitchModelResult> {
    return this.models.switchModel(name);
  }

  /** `onPartial`: a multi-line completion's first line as soon as it is generated (completion.ts runComplete). */
  complete(params: CompleteParams, signal?: CancelSignal, onPartial?: PartialSink): Promise<CompleteResult> {
    const key = `complete:${params?.model ?? this.activeModel?.name ?? ''}`;
    const provider = () => this.activeModel?.session.activeProvider ?? 'cpu';
    const name = () => params?.model ?? this.activeModel?.name ?? '';
    return this.scheduler.submit(key, signal, async (ctl) => {
      const c = this.counters.count(name());
      c.requests++;
      let model: LoadedModel;
      try {
        model = await this.models.modelFor(params?.model);
      } catch (e) {
        c.errors++;
        return emptyCompleteResult(params, name(), provider(), 'error', (e as Error).message);
      }
      this.models.status('working');
      try {
        const r = await runComplete(model, params, ctl, onPartial);
        this.counters.record(c, r);
        this.models.status('ready', `${Math.round(r.timings.totalMs)} ms`);
        return r;
      } catch (e) {
        c.errors++;
        if (!(e instanceof InputError)) await this.recover(model, e);
        this.models.status('ready', (e as Error).message);
        return emptyCompleteResult(params, model.name, model.session.activeProvider, 'error', (e as Error).message);
      }
    }, (why, arrivedAt) => {
      const c = this.counters.count(name());
      c.requests++;
      c.cancelled++;
      const r = emptyCompleteResult(params, name(), provider(), why);
      r.timings = { ...r.timings, totalMs: performance.now() - arrivedAt };
      return r;
    });
  }

  /**
   * Reads the prompt `params` would give into the KV cache, at background priority: it never supersedes
   * a completion, and any newer request (or a newer prefill for the model) stops it between chunks (prefill.ts).
   */
  prefill(params: CompleteParams, signal?: CancelSignal): Promise<PrefillResult> {
    const key = `complete:${params?.model ?? this.activeModel?.name ?? ''}`;
    const name = () => params?.model ?? this.activeModel?.name ?? '';
    return this.scheduler.submit(key, signal, async (ctl) => {
      let model: LoadedModel;
      try {
        model = await this.models.modelFor(params?.model);
      } catch (e) {
        return emptyPrefillResult(params, name(), 'error', (e as Error).message);
      }
      try {
        const r = await runPrefill(model, params, ctl);
        if (r.readTokens > 0) {
          this.log(`prefill ${r.requestId}: read ${r.readTokens} of ${r.promptTokens} prompt tokens in ${Math.round(r.prefillMs)} ms (${r.state})`);
        }
        return r;
      } catch (e) {
        if (!(e instanceof InputError)) await this.recover(model, e);
        return emptyPrefillResult(params, model.name, 'error', (e as Error).message);
      }
    }, (why, arrivedAt) => ({ ...emptyPrefillResult(params, name(), why), totalMs: performance.now() - arrivedAt }), 'background');
  }

  analyze(params: AnalyzeParams, signal?: CancelSignal): Promise<AnalyzeResult> {
    const fail = (error: string): AnalyzeResult => emptyAnalyzeResult(params?.model ?? this.activeModel?.name ?? '', error);
    return this.scheduler.submit(null, signal, async (ctl) => {
      try {
        const model = await this.models.modelFor(params?.model);
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
    return this.models.providerStatus();
  }

  /** Reloads the active model on the chosen provider (falling back to cpu); the old session serves meanwhile. */
  setProvider(pref: ProviderPreference): Promise<ProviderStatus> {
    return this.models.setProvider(pref);
  }

  stats(): StatsResult {
    return { perModel: this.counters.stats(), rssBytes: process.memoryUsage.rss(), uptimeMs: Date.now() - this.startedAt };
  }

  dispose(): Promise<void> {
    return this.models.dispose();
  }

  /** After a failed step the cache may not match the session; on a GPU provider, fall back to cpu. */
  private async recover(model: LoadedModel, e: unknown): Promise<void> {
    this.log(`inference failed on ${model.name}: ${(e as Error).stack ?? e}`);
    model.kv.clear();
    if (model.session.activeProvider !== 'cpu' && model === this.activeModel) {
      this.log('falling back to cpu after a provider failure');
      void this.setProvider('cpu');
    }
  }

  private log(msg: string): void {
    this.opts.log?.(msg);
  }
}
