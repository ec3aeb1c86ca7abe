// Realistic decode loop in onnxruntime-node (the backend's runtime) on an exported model
// folder: prefill PROMPT random tokens, then STEPS greedy decode steps feeding the
// present KV back as past. Prints prefill ms and decode ms/token (median), CPU EP,
// worker-thread spinning off.
//   node models/toolchain/bench_node.mjs MODEL_DIR [PROMPT=512] [STEPS=32]
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

const require = createRequire(import.meta.url);
const ort = require('onnxruntime-node');
const [dir, promptArg = '512', stepsArg = '32'] = process.argv.slice(2);
const manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8'));
const { n_layer: nLayer, n_head: nHead, vocab_size: vocab } = manifest.architecture;
const headDim = manifest.graph.head_dim;
const session = await ort.InferenceSession.create(join(dir, manifest.graph.file), {
  executionProviders: ['cpu'],
  extra: { session: { intra_op: { allow_spinning: '0' } } },
});

const ids = (n) => new ort.Tensor('int64', BigInt64Array.from({ length: n }, (_, i) => BigInt(6 + ((i * 7919) % (vocab - 6)))), [1, n]);
const one = new ort.Tensor('int64', BigInt64Array.from([1n]), [1]);
async function run(inputIds, past) {
  const out = await session.run({ input_ids: inputIds, num_logits: one, ...past });
  const next = {};
  for (let i = 0; i < nLayer; i++) {
    next[`past_key_${i}`] = out[`present_key_${i}`];
    next[`past_value_${i}`] = out[`present_value_${i}`];
  }
  return [out, next];
}
const empty = new ort.Tensor('float32', new Float32Array(0), [1, nHead, 0, headDim]);
const fresh = () => Object.fromEntries(Array.from({ length: nLayer }, (_, i) => [[`past_key_${i}`, empty], [`past_value_${i}`, empty]]).flat());

const prompt = Number(promptArg);
const steps = Number(stepsArg);
await run(ids(prompt), fresh());                       // warm-up
const t0 = performance.now();
let [out, past] = await run(ids(prompt), fresh());
const prefill = performance.now() - t0;
const times = [];
let loops = 0;
for (let s = 0; s < steps; s++) {
  const logits = out.logits.data;
  let best = 0;
  for (let v = 1; v < logits.length; v++) if (logits[v] > logits[best]) best = v;
  const t = performance.now();
  [out, past] = await run(new ort.Tensor('int64', BigInt64Array.from([BigInt(best)]), [1, 1]), past);
  times.push(performance.now() - t);
  loops += Array.from(out.route_loops.data, Number).reduce((a, b) => a + b, 0) / nLayer;
}
times.sort((a, b) => a - b);
console.log(JSON.stringify({ model: dir, weights: manifest.graph.weights_dtype, prompt, steps,
  prefill_ms: +prefill.toFixed(1), decode_ms_median: +times[times.length >> 1].toFixed(2),
  decode_ms_min: +times[0].toFixed(2), mean_loops: +(loops / steps).toFixed(2) }));
