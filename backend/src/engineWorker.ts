// The Engine's own thread (see engineHost.ts for why): runs the calls the host posts and sends back
// their results, the engine's log lines and its status. Loading and inference may block this
// thread for seconds; the server's main thread stays free meanwhile.
import { parentPort, workerData } from 'node:worker_threads';
import { Engine } from './engine/engine';
import { crashSessionThreadsForTest, endSessionThreads, onSessionThreadDeath } from './engine/sessionThread';
import type { CancelSignal } from './engine/scheduler';
import type { FromWorker, ToWorker, WorkerInit } from './engineHost';
import type { AnalyzeParams, CompleteParams, ProviderPreference } from '../../common/protocol';

const init = workerData as WorkerInit;
const port = parentPort!;
/** Set while the worker ends itself (exitAfter): no more results, the host fails what is pending. */
let exiting = false;
const post = (m: FromWorker) => {
  if (!(exiting && m.type === 'result')) port.postMessage(m);
};
const flags = new Int32Array(init.cancelFlags);
/** Calls running now, and those of them cancelled by message (the only way for a call without a flag slot). */
const running = new Set<number>();
const cancelledById = new Set<number>();

const engine = new Engine({
  modelDirs: init.modelDirs,
  provider: init.provider,
  threads: init.threads,
  log: (msg) => post({ type: 'log', msg }),
  onStatus: (status) => post({ type: 'status', status }),
});

/**
 * Ends this worker so the host starts a fresh one that reloads the model, after ending the session
 * threads between their runs (tearing one down inside a run aborts the process, sessionThread.ts).
 */
function exitAfter(reason: string, code = 1): void {
  if (exiting) return;
  exiting = true;
  if (code !== 0) post({ type: 'log', msg: `${reason}; restarting the inference worker` });
  const bound = setTimeout(() => process.exit(code), 30_000);   // a run takes seconds, not this long
  void endSessionThreads().finally(() => {
    clearTimeout(bound);
    process.exit(code);
  });
}

// A model whose session thread died cannot serve again.
onSessionThreadDeath((e) => exitAfter(e.message));
// An uncaught exception may leave the engine half-updated: the same way out.
process.on('uncaughtException', (e) => exitAfter(`uncaught exception in the inference worker: ${e?.stack ?? e}`));
// One failed promise does not take the loaded models down (as on the main thread before).
process.on('unhandledRejection', (e) => post({ type: 'log', msg: `unhandled rejection in the inference worker: ${(e as Error)?.stack ?? e}` }));

/** Checked between prefill chunks and decode steps: Atomics.load sees the host's flag even when this thread takes no messages. */
function signal(id: number, slot: number): CancelSignal {
  return { get cancelled() { return (slot >= 0 && Atomics.load(flags, slot) !== 0) || cancelledById.has(id); } };
}

function run(m: Extract<ToWorker, { type: 'call' }>): unknown {
  const a = m.args[0];
  switch (m.method) {
    case 'start': return engine.start(a as string | null);
    case 'listModels': return engine.listModels();
    case 'switchModel': return engine.switchModel(a as string);
    case 'complete':
      return engine.complete(a as CompleteParams, signal(m.id, m.slot), m.partial ? (value) => post({ type: 'partial', id: m.id, value }) : undefined);
    case 'prefill': return engine.prefill(a as CompleteParams, signal(m.id, m.slot));
    case 'analyze': return engine.analyze(a as AnalyzeParams, signal(m.id, m.slot));
    case 'providerStatus': return engine.providerStatus();
    case 'setProvider': return engine.setProvider(a as ProviderPreference);
    case 'stats': return engine.stats();
    case 'dispose': return engine.dispose();
  }
}

port.on('message', (m: ToWorker) => {
  switch (m.type) {
    case 'call':
      running.add(m.id);
      void (async () => {
        try {
          post({ type: 'result', id: m.id, value: await run(m) });
        } catch (e) {
          post({ type: 'result', id: m.id, error: { message: (e as Error)?.message ?? String(e), stack: (e as Error)?.stack } });
        } finally {
          running.delete(m.id);
          cancelledById.delete(m.id);
        }
      })();
      return;
    case 'cancel':
      if (running.has(m.id)) cancelledById.add(m.id);
      engine.poke();
      return;
    case 'poke':
      engine.poke();
      return;
    case 'exit':
      exitAfter('the backend is shutting down', 0);
      return;
    case 'crash':
      if (m.what === 'sessionThread') crashSessionThreadsForTest();
      else setImmediate(() => { throw new Error('crash requested by a test'); });
      return;
  }
});
