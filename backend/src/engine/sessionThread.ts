// The engine's side of the session thread (sessionWorker.ts): a SessionRunner whose calls are messages.
//
// A session thread is never terminated from outside while it may be inside a graph run: onnxruntime-node
// 1.30 aborts the whole process when a worker is torn down during a run ("terminate called after
// throwing an instance of 'Napi::Error'", reproduced here with the tiny model). So release and kill
// both ask the thread to end after its current run, and the engine's worker ends its session threads
// this way before it exits (endSessionThreads).
import type { Worker } from 'node:worker_threads';
import type { ProviderPreference, ProviderStatus } from '../../../common/protocol';
import type { RawRun, RunRequest, SessionRunner } from './graphRunner';
import type { Manifest } from './modelFolder';
import { scriptBeside, startWorker } from './threads';

export type ToSession =
  | { type: 'create'; dir: string; manifest: Manifest; pref: ProviderPreference; threads: number }
  | { type: 'run'; seq: number; req: RunRequest }
  | { type: 'drop'; cacheId: number }
  /** Release the session after the runs already sent, answer, and end the thread. */
  | { type: 'end'; seq: number }
  /** Tests only: an uncaught error in the thread. */
  | { type: 'crash' };

export type FromSession =
  | { type: 'created'; status: ProviderStatus }
  | { type: 'createFailed'; message: string }
  | { type: 'result'; seq: number; value?: RawRun; error?: string };

let onDeath: ((e: Error) => void) | undefined;
const live = new Set<SessionThread>();
/** Threads still creating their session (not in `live` yet), and whether this isolate is ending them all. */
const starting = new Set<Promise<unknown>>();
let closing = false;

/**
 * Who hears of a session thread that died on its own (not released or killed). The engine's worker
 * ends itself then, so the host starts a fresh one that reloads the model (engineHost.ts); elsewhere
 * (CLI, bench) the session's later runs fail with the reason.
 */
export function onSessionThreadDeath(handler: (e: Error) => void): void {
  onDeath = handler;
}

/**
 * Ends every session thread of this isolate after its current run (before the isolate exits): those
 * still creating their session first finish creating it; no new one starts.
 */
export async function endSessionThreads(): Promise<void> {
  closing = true;
  await Promise.allSettled([...starting]);
  await Promise.all([...live].map((t) => t.release()));
}

/** Tests only: every session thread fails as in a crash. */
export function crashSessionThreadsForTest(): void {
  for (const t of live) t.crashForTest();
}

interface Pending {
  resolve(v: RawRun | undefined): void;
  reject(e: Error): void;
}

export class SessionThread implements SessionRunner {
  private readonly pending = new Map<number, Pending>();
  private seq = 0;
  /** Set once the thread is gone or ending: every later call fails with it. */
  private dead: Error | null = null;
  /** Released or killed: its exit is expected. */
  private ending = false;
  private readonly exited: Promise<void>;

  private constructor(private readonly worker: Worker) {
    live.add(this);
    worker.on('message', (m: FromSession) => {
      if (m.type !== 'result') return;
      const p = this.pending.get(m.seq);
      if (!p) return;
      this.settled(m.seq);
      if (m.error !== undefined) p.reject(new Error(m.error));
      else p.resolve(m.value);
    });
    let lastError: Error | null = null;
    worker.on('error', (e) => { lastError = e; });
    this.exited = new Promise((resolve) => worker.once('exit', (code) => {
      live.delete(this);
      const e = new Error(`the inference thread stopped (exit code ${code}${lastError ? `: ${lastError.message}` : ''})`);
      this.fail(e);
      if (!this.ending) onDeath?.(e);
      resolve();
    }));
  }

  /** Starts the thread and creates the session there; the status says which provider runs. */
  static async create(
    dir: string, manifest: Manifest, pref: ProviderPreference, threads: number,
  ): Promise<{ runner: SessionThread; status: ProviderStatus }> {
    if (closing) throw new Error('the backend is shutting down');
    const creating = SessionThread.start(dir, manifest, pref, threads);
    starting.add(creating);
    try {
      return await creating;
    } finally {
      starting.delete(creating);
    }
  }

  private static async start(
    dir: string, manifest: Manifest, pref: ProviderPreference, threads: number,
  ): Promise<{ runner: SessionThread; status: ProviderStatus }> {
    const worker = startWorker(scriptBeside(__dirname, 'sessionWorker'), {});
    let onMessage!: (m: FromSession) => void;
    let onError!: (e: Error) => void;
    let onExit!: (code: number) => void;
    const answer = await new Promise<FromSession>((resolve, reject) => {
      onMessage = resolve;
      onError = reject;
      onExit = (code) => reject(new Error(`the inference thread stopped while loading (exit code ${code})`));
      worker.once('message', onMessage).once('error', onError).once('exit', onExit);
      worker.postMessage({ type: 'create', dir, manifest, pref, threads } satisfies ToSession);
    }).catch(async (e) => {
      await worker.terminate();   // not in a run: it failed loading
      throw e;
    });
    // Only these: Worker keeps listeners of its own (removeAllListeners would stop its message port).
    worker.off('message', onMessage).off('error', onError).off('exit', onExit);
    if (answer.type !== 'created') {
      await worker.terminate();   // not in a run: creating the session failed
      throw new Error(answer.type === 'createFailed' ? answer.message : `unexpected first message ${answer.type}`);
    }
    worker.unref();   // an idle session does not keep the process alive; a pending call does (see call)
    return { runner: new SessionThread(worker), status: answer.status };
  }

  run(req: RunRequest): Promise<RawRun> {
    return this.call((seq) => ({ type: 'run', seq, req })) as Promise<RawRun>;
  }

  dropCache(cacheId: number): void {
    if (!this.dead) this.worker.postMessage({ type: 'drop', cacheId } satisfies ToSession);
  }

  /** Releases the session after the runs already sent, and waits for the thread to end. */
  async release(): Promise<void> {
    if (!this.ending) {
      const ended = this.call((seq) => ({ type: 'end', seq })).catch(() => undefined);
      this.ending = true;
      this.dead ??= new Error('the session was released');
      await ended;
      await this.worker.terminate();   // it answered after its last run: nothing native is running
    }
    await this.exited;
  }

  /** Fails the runs in flight at once with "the inference thread stopped"; the thread ends after its current run. */
  kill(): Promise<void> {
    if (!this.ending) {
      this.ending = true;
      this.fail(new Error('the inference thread stopped (killed)'));
      this.worker.ref();
      this.worker.postMessage({ type: 'end', seq: 0 } satisfies ToSession);
    }
    return this.exited;
  }

  crashForTest(): void {
    if (!this.dead) this.worker.postMessage({ type: 'crash' } satisfies ToSession);
  }

  private call(message: (seq: number) => ToSession): Promise<RawRun | undefined> {
    if (this.dead) return Promise.reject(this.dead);
    const seq = ++this.seq;
    return new Promise((resolve, reject) => {
      this.pending.set(seq, { resolve, reject });
      if (this.pending.size === 1) this.worker.ref();
      this.worker.postMessage(message(seq));
    });
  }

  /** Marks the thread gone and fails every pending call with `e`. */
  private fail(e: Error): void {
    this.dead ??= e;
    for (const [seq, p] of [...this.pending]) {
      this.settled(seq);
      p.reject(e);
    }
  }

  private settled(seq: number): void {
    this.pending.delete(seq);
    if (this.pending.size === 0) this.worker.unref();
  }
}
