// The session's own thread (session.ts says why): creates the InferenceSession, holds the KV stores
// and runs the graph for the engine's thread, which sends token ids and gets logits and routing back.
import * as path from 'node:path';
import { parentPort } from 'node:worker_threads';
import { EmbeddingRows } from './embeddingRows';
import { GraphRunner, probeFeedsOf, RawRun } from './graphRunner';
import { graphFileFor } from './modelFolder';
import { createSession } from './providers';
import type { FromSession, ToSession } from './sessionThread';

const port = parentPort!;
const post = (m: FromSession, transfer: ArrayBuffer[] = []) => port.postMessage(m, transfer);
let runner: GraphRunner | undefined;
/**
 * Runs not finished yet. onnxruntime-node starts a run on a later turn of the event loop, so an 'end'
 * message can arrive before a run it follows has begun; releasing the session then aborts the process.
 */
const running = new Set<Promise<unknown>>();

/** The result arrays' buffers, handed over instead of copied when each array spans its whole buffer. */
function transferable(r: RawRun): ArrayBuffer[] {
  const buffers = new Set<ArrayBuffer>();
  for (const t of [r.logits, ...Object.values(r.routing)]) {
    const b = t.data.buffer as ArrayBuffer;
    if (t.data.byteOffset === 0 && t.data.byteLength === b.byteLength) buffers.add(b);
  }
  return [...buffers];
}

const message = (e: unknown) => (e as Error)?.message ?? String(e);

port.on('message', async (m: ToSession) => {
  switch (m.type) {
    case 'create':
      try {
        // Opened first: a missing or damaged table is refused before seconds go into the session.
        const embeddings = EmbeddingRows.forModel(m.dir, m.manifest);
        try {
          const { session, status } = await createSession((p) => path.join(m.dir, graphFileFor(m.manifest, p)), m.pref, m.threads, probeFeedsOf(m.manifest));
          try {
            runner = new GraphRunner(session, m.manifest, embeddings);
          } catch (e) {
            await session.release();
            throw e;
          }
          post({ type: 'created', status });
        } catch (e) {
          embeddings?.close();
          throw e;
        }
      } catch (e) {
        post({ type: 'createFailed', message: message(e) });
      }
      return;
    case 'run':
      try {
        const run = runner!.run(m.req);
        running.add(run);
        const value = await run.finally(() => running.delete(run));
        post({ type: 'result', seq: m.seq, value }, transferable(value));
      } catch (e) {
        post({ type: 'result', seq: m.seq, error: message(e) });
      }
      return;
    case 'drop':
      runner?.dropCache(m.cacheId);
      return;
    case 'end':
      try {
        await Promise.allSettled([...running]);
        await runner?.release();
      } finally {
        runner = undefined;
        post({ type: 'result', seq: m.seq });
        port.close();   // nothing else keeps this thread alive: it ends here, between runs
      }
      return;
    case 'crash':
      setImmediate(() => { throw new Error('crash requested by a test'); });
      return;
  }
});
