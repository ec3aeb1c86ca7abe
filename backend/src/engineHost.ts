// The engine as the server's main thread sees it. onnxruntime-node creates sessions and runs graphs
// in synchronous native calls (the 0.5B default model blocks its thread ~2.5 s to load and ~3 s
// per 1k-token prefill), so the Engine lives in a worker thread (engineWorker.ts) and this proxy,
// with the Engine's async surface, forwards each call as a message. The main thread stays free to
// take $/cancelRequest, status and list requests while the worker computes.
// Cancellation: one Int32 flag per in-flight request in a SharedArrayBuffer, set here and read by the
// worker with Atomics.load, so it reaches a request even when the worker takes no messages.
// A worker that dies fails its pending calls (never a hang), and a fresh one reloads the model.
import type { Worker } from 'node:worker_threads';
import type {
  AnalyzeParams, AnalyzeResult, CompleteParams, CompletePartial, CompleteResult, ListModelsResult, PrefillResult, ProviderPreference, ProviderStatus,
  StatsResult, StatusParams, SwitchModelResult,
} from '../../common/protocol';
import type { EngineOptions } from './engine/engine';
import { scriptBeside, startWorker } from './engine/threads';

/** The part of the LSP library's CancellationToken the host uses. */
export interface CancelToken {
  readonly isCancellationRequested: boolean;
  onCancellationRequested(listener: () => void): { dispose(): void };
}

export interface EngineHostOptions extends EngineOptions {
  /** The worker script; default: engineWorker.js beside this bundle (engineWorker.ts under tsx). */
  workerFile?: string;
}

/** workerData of a new worker. */
export interface WorkerInit {
  modelDirs: string[];
  provider: ProviderPreference;
  threads: number;
  /** Int32 cancel flags, one per slot; a call's `slot` names its flag (-1: none, cancelled by message). */
  cancelFlags: SharedArrayBuffer;
}

export type Method = 'start' | 'listModels' | 'switchModel' | 'complete' | 'prefill' | 'analyze' | 'providerStatus' | 'setProvider' | 'stats' | 'dispose';

/** host → worker */
export type ToWorker =
  | { type: 'call'; id: number; method: Method; args: unknown[]; slot: number; partial?: boolean } // partial: send a completion's first line as it comes
  | { type: 'cancel'; id: number } // after its flag is set: ends it if it still waits, and covers slot -1
  | { type: 'poke' }
  | { type: 'exit' } // shutting down: end the session threads between runs, then exit
  | { type: 'crash'; what: 'worker' | 'sessionThread' }; // tests only: an uncaught error in the worker or its session thread

/** worker → host */
export type FromWorker =
  | { type: 'result'; id: number; value?: unknown; error?: { message: string; stack?: string } }
  | { type: 'partial'; id: number; value: CompletePartial }
  | { type: 'log'; msg: string }
  | { type: 'status'; status: StatusParams };

interface Pending {
  resolve: (v: never) => void;
  reject: (e: Error) => void;
  slot: number;
  listener?: { dispose(): void };
  onPartial?: (p: CompletePartial) => void;
}

/** More requests in flight than this (the scheduler supersedes, so never in practice) are cancelled by message only. */
const SLOTS = 1024;
/** A worker that dies this often within the window is not restarted again (a model that crashes it on every load). */
const MAX_CRASHES = 3;
const CRASH_WINDOW_MS = 60_000;
const DISPOSE_TIMEOUT_MS = 5000;
/** After that, how long the worker may take to end its session threads (a graph run takes seconds). */
const EXIT_TIMEOUT_MS = 30_000;

export class EngineHost {
  private worker!: Worker;
  private flags!: Int32Array;
  private freeSlots: number[] = [];
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  /** The model the worker serves (from its status and switch results): a new worker reloads it. */
  private active: string | null = null;
  private preferred: string | null = null;
  private provider: ProviderPreference;
  /** The last status that carried a load in progress, and when that load began (host clock). */
  private loading: { status: StatusParams; since: number } | null = null;
  private ticker: NodeJS.Timeout | undefined;
  /** Set while a new worker reloads the model: completions wait for it instead of finding no model. */
  private recovering: Promise<void> | null = null;
  private crashes: number[] = [];
  private gaveUp: string | null = null;
  private disposed = false;

  constructor(private readonly opts: EngineHostOptions) {
    this.provider = opts.provider;
    this.spawn();
  }

  get activeModel(): { name: string } | null {
    return this.active ? { name: this.active } : null;
  }

  start(preferred: string | null): Promise<SwitchModelResult> {
    this.preferred = preferred;
    return this.call('start', [preferred]);
  }

  listModels(): Promise<ListModelsResult> {
    return this.call('listModels', []);
  }

  async switchModel(name: string): Promise<SwitchModelResult> {
    const r = await this.call<SwitchModelResult>('switchModel', [name]);
    if (r.ok && r.active) this.active = r.active;
    return r;
  }

  /** `onPartial`: the completion's first line, when it is multi-line and that line is ready first (completion.ts runComplete). */
  async complete(params: CompleteParams, token?: CancelToken, onPartial?: (p: CompletePartial) => void): Promise<CompleteResult> {
    if (this.recovering) await this.recovering;
    return this.call('complete', [params], token, onPartial);
  }

  async prefill(params: CompleteParams, token?: CancelToken): Promise<PrefillResult> {
    if (this.recovering) await this.recovering;
    return this.call('prefill', [params], token);
  }

  async analyze(params: AnalyzeParams, token?: CancelToken): Promise<AnalyzeResult> {
    if (this.recovering) await this.recovering;
    return this.call('analyze', [params], token);
  }

  /** Lets the worker end waiting requests whose flags were set (a cancel does this itself). */
  poke(): void {
    if (!this.gaveUp && !this.disposed) this.worker.postMessage({ type: 'poke' } satisfies ToWorker);
  }

  providerStatus(): Promise<ProviderStatus> {
    return this.call('providerStatus', []);
  }

  setProvider(pref: ProviderPreference): Promise<ProviderStatus> {
    this.provider = pref;
    return this.call('setProvider', [pref]);
  }

  stats(): Promise<StatsResult> {
    return this.call('stats', []);
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    this.stopTicker();
    const w = this.worker;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((resolve) => { timer = setTimeout(resolve, DISPOSE_TIMEOUT_MS); });
    await Promise.race([this.call('dispose', []).catch(() => undefined), timeout]);
    clearTimeout(timer);
    this.failAll('the backend is shutting down');
    // The worker ends itself: terminating it while its session thread is inside a run (or creating a
    // session) would abort the whole process (sessionThread.ts). Terminate only if it does not.
    if (w.threadId === -1) return;   // gone already (crashed and not restarted)
    const exited = new Promise<void>((resolve) => w.once('exit', () => resolve()));
    w.postMessage({ type: 'exit' } satisfies ToWorker);
    const bound = new Promise<void>((resolve) => { timer = setTimeout(resolve, EXIT_TIMEOUT_MS); });
    await Promise.race([exited, bound]);
    clearTimeout(timer);
    await w.terminate();
  }

  /**
   * Tests only: the worker dies as in a crash ('throw': an uncaught error in it; 'sessionThread': its
   * model's session thread dies). Not 'terminate' from outside: a worker torn down inside a graph run
   * aborts the process (onnxruntime-node 1.30, backend/src/engine/sessionThread.ts); the host only
   * terminates its worker when shutting down, after the engine released its models.
   */
  crashWorkerForTest(how: 'throw' | 'sessionThread'): void {
    this.worker.postMessage({ type: 'crash', what: how === 'throw' ? 'worker' : 'sessionThread' } satisfies ToWorker);
  }

  private call<T>(method: Method, args: unknown[], token?: CancelToken, onPartial?: (p: CompletePartial) => void): Promise<T> {
    if (this.disposed && method !== 'dispose') return Promise.reject(new Error('the backend is shutting down'));
    if (this.gaveUp) return Promise.reject(new Error(this.gaveUp));
    return new Promise<T>((resolve, reject) => {
      const id = this.nextId++;
      const slot = token ? (this.freeSlots.pop() ?? -1) : -1;
      const p: Pending = { resolve: resolve as (v: never) => void, reject, slot, onPartial };
      try {
        this.worker.postMessage({ type: 'call', id, method, args, slot, partial: onPartial !== undefined } satisfies ToWorker);
      } catch (e) {
        if (slot >= 0) this.freeSlots.push(slot);
        reject(e as Error); // arguments that cannot be cloned
        return;
      }
      this.pending.set(id, p);
      if (!token) return;
      if (token.isCancellationRequested) this.cancel(id);
      else p.listener = token.onCancellationRequested(() => this.cancel(id));
    });
  }

  private cancel(id: number): void {
    const p = this.pending.get(id);
    if (!p) return;
    if (p.slot >= 0) Atomics.store(this.flags, p.slot, 1);
    this.worker.postMessage({ type: 'cancel', id } satisfies ToWorker);
  }

  private spawn(): void {
    const cancelFlags = new SharedArrayBuffer(SLOTS * Int32Array.BYTES_PER_ELEMENT);
    this.flags = new Int32Array(cancelFlags);
    this.freeSlots = Array.from({ length: SLOTS }, (_, i) => SLOTS - 1 - i);
    const init: WorkerInit = { modelDirs: this.opts.modelDirs, provider: this.provider, threads: this.opts.threads, cancelFlags };
    const w = startWorker(this.opts.workerFile ?? defaultWorkerFile(), { workerData: init, stdout: true });
    this.worker = w;
    let lastError: Error | null = null;
    // The worker's stdout would otherwise go into the LSP stream on this process's stdout.
    w.stdout.setEncoding('utf8');
    w.stdout.on('data', (text: string) => {
      for (const line of text.split('\n')) if (line.trim()) this.log(`worker: ${line}`);
    });
    w.on('message', (m: FromWorker) => {
      if (w === this.worker) this.onMessage(m);
    });
    w.on('error', (e) => { lastError = e; });
    w.on('exit', (code) => this.onExit(w, code, lastError));
  }

  private onMessage(m: FromWorker): void {
    switch (m.type) {
      case 'result': {
        const p = this.pending.get(m.id);
        if (!p) return;
        this.pending.delete(m.id);
        p.listener?.dispose();
        if (p.slot >= 0) {
          Atomics.store(this.flags, p.slot, 0);
          this.freeSlots.push(p.slot);
        }
        if (m.error) {
          const e = new Error(m.error.message);
          if (m.error.stack) e.stack = m.error.stack;
          p.reject(e);
        } else {
          p.resolve(m.value as never);
        }
        return;
      }
      case 'partial':
        this.pending.get(m.id)?.onPartial?.(m.value);
        return;
      case 'log':
        this.log(m.msg);
        return;
      case 'status':
        this.onWorkerStatus(m.status);
        return;
    }
  }

  /** Forwards the worker's status; while a load lasts, re-sends it each second with the time so far (the worker may be blocked). */
  private onWorkerStatus(s: StatusParams): void {
    if (s.model) this.active = s.model;
    if (s.loading) {
      this.loading = { status: s, since: Date.now() - s.loading.elapsedMs };
      if (!this.ticker) {
        this.ticker = setInterval(() => {
          const l = this.loading;
          if (l?.status.loading) this.opts.onStatus?.({ ...l.status, loading: { ...l.status.loading, elapsedMs: Date.now() - l.since } });
        }, 1000);
        this.ticker.unref();
      }
    } else {
      this.stopTicker();
    }
    this.opts.onStatus?.(s);
  }

  private stopTicker(): void {
    clearInterval(this.ticker);
    this.ticker = undefined;
    this.loading = null;
  }

  private onExit(w: Worker, code: number, err: Error | null): void {
    if (w !== this.worker) return;
    this.stopTicker();
    if (this.disposed) {
      this.failAll('the backend is shutting down');
      return;
    }
    const stopped = `the inference worker stopped (${err ? err.message : `exit code ${code}`})`;
    this.failAll(`${stopped}; it is being restarted`);
    const now = Date.now();
    this.crashes = this.crashes.filter((t) => now - t < CRASH_WINDOW_MS);
    this.crashes.push(now);
    if (this.crashes.length >= MAX_CRASHES) {
      this.gaveUp = `${stopped}, ${this.crashes.length} times within a minute, and was not restarted. Run "VersatileFFN: Restart Backend".`;
      this.log(this.gaveUp);
      this.opts.onStatus?.({ state: 'error', model: null, provider: null, message: this.gaveUp });
      return;
    }
    const model = this.active ?? this.preferred;
    const message = `${stopped}; restarting it${model ? ` and reloading ${model}` : ''}`;
    this.log(`${message}${err?.stack ? `\n${err.stack}` : ''}`);
    this.opts.onStatus?.({ state: 'error', model: this.active, provider: null, message });
    this.spawn();
    const r: Promise<void> = this.call<SwitchModelResult>('start', [model]).then(
      (s) => { if (!s.ok || s.error) this.log(`reload after the worker stopped: ${s.error ?? 'no model loaded'}`); },
      (e) => this.log(`reload after the worker stopped failed: ${(e as Error).message}`),
    );
    this.recovering = r;
    void r.then(() => { if (this.recovering === r) this.recovering = null; });
  }

  /** Every pending call gets an error now; the server's handlers turn it into their error result. */
  private failAll(message: string): void {
    const all = [...this.pending.values()];
    this.pending.clear();
    for (const p of all) {
      p.listener?.dispose();
      p.reject(new Error(message));
    }
  }

  private log(msg: string): void {
    this.opts.log?.(msg);
  }
}

/** dist/server.js and dist/engineWorker.js are bundled side by side; from sources (tsx) this file sits beside engineWorker.ts. */
function defaultWorkerFile(): string {
  return scriptBeside(__dirname, 'engineWorker');
}
