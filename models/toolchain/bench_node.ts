// Realistic decode loop on an exported model folder through the backend's own session code
// (backend/src/engine/session.ts, kvCache.ts; CPU execution provider, the backend's session options):
// prefill PROMPT tokens, then STEPS greedy decode steps on the KV cache. Prints prefill ms and decode
// ms/token (median) as one JSON line.
//   node --import tsx models/toolchain/bench_node.ts MODEL_DIR [PROMPT=512] [STEPS=32]
import { KvCache } from '../../backend/src/engine/kvCache';
import { readManifest } from '../../backend/src/engine/modelFolder';
import { ModelSession } from '../../backend/src/engine/session';

async function main(): Promise<void> {
  const [dir, promptArg = '512', stepsArg = '32'] = process.argv.slice(2);
  if (!dir) throw new Error('usage: node --import tsx models/toolchain/bench_node.ts MODEL_DIR [PROMPT=512] [STEPS=32]');
  const manifest = readManifest(dir);
  const vocab = manifest.architecture.vocab_size;
  const session = await ModelSession.create(dir, manifest, 'cpu', 0);
  const prompt = Array.from({ length: Number(promptArg) }, (_, i) => 6 + ((i * 7919) % (vocab - 6)));
  const steps = Number(stepsArg);

  const warm = new KvCache(session.kv);
  await session.step(prompt, warm, 1); // warm-up
  warm.dispose();
  const cache = new KvCache(session.kv);
  const t0 = performance.now();
  let r = await session.step(prompt, cache, 1);
  const prefill = performance.now() - t0;
  const times: number[] = [];
  let loops = 0;
  for (let s = 0; s < steps; s++) {
    let best = 0;
    for (let v = 1; v < r.vocab; v++) if (r.logits[v] > r.logits[best]) best = v;
    const t = performance.now();
    r = await session.step([best], cache, 1);
    times.push(performance.now() - t);
    const l = r.routing[0].loops;
    loops += l.reduce((a, b) => a + b, 0) / l.length;
  }
  times.sort((a, b) => a - b);
  console.log(JSON.stringify({
    model: dir, weights: manifest.graph.weights_dtype, prompt: prompt.length, steps,
    prefill_ms: +prefill.toFixed(1), decode_ms_median: +times[times.length >> 1].toFixed(2),
    decode_ms_min: +times[0].toFixed(2), mean_loops: +(loops / steps).toFixed(2),
  }));
  cache.dispose();
  await session.release();
}

main().catch((e: Error) => {
  console.error(e.stack ?? String(e));
  process.exit(1);
});
