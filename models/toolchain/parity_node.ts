// Runs an exported model folder the way the backend does, for the Python parity tests: the backend's
// own modelFolder.ts (the manifest checked against models/manifest.schema.json), session.ts (graph
// contract, KV cache, routing outputs) and tokenizer.ts, not a second copy of them. Run through tsx:
//
//   node --import tsx models/toolchain/parity_node.ts run MODEL_DIR REQUEST.json OUT.json
//     REQUEST: {"chunks": [[ids of the prefill], [id], [id], ...]}  (teacher-forced steps)
//     OUT: {"steps": [{logits, route_loops, route_lambda, route_experts, route_weights, route_loop_probs
//           [, route_ffn_share]}]}, each {dims, data} in the graph's own layout ([n_layer, T, ...])
//   node --import tsx models/toolchain/parity_node.ts greedy MODEL_DIR OUT.json
//     greedy decode of manifest.test_vectors.prompt_ids; OUT: {"greedy_ids": [...]}
//   node --import tsx models/toolchain/parity_node.ts tokenize MODEL_DIR TEXTS.json OUT.json
//     TEXTS: ["...", ...]; OUT: {"ids": [[...], ...], "decoded": ["...", ...]}
import { readFileSync, writeFileSync } from 'node:fs';
import type { TokenRouting } from '../../common/protocol';
import { KvCache } from '../../backend/src/engine/kvCache';
import { readManifest } from '../../backend/src/engine/modelFolder';
import { ModelSession, StepResult } from '../../backend/src/engine/session';
import { CodeTokenizer } from '../../backend/src/engine/tokenizer';

const readJson = (p: string) => JSON.parse(readFileSync(p, 'utf8'));

interface Plain {
  dims: number[];
  data: number[];
}

async function open(dir: string): Promise<{ session: ModelSession; cache: KvCache; manifest: ReturnType<typeof readManifest> }> {
  const manifest = readManifest(dir);
  const session = await ModelSession.create(dir, manifest, 'cpu', 0);
  return { session, cache: new KvCache(session.kv), manifest };
}

/** TokenRouting per position back into the graph's [n_layer, T, ...] tensors. */
function routingTensors(routing: TokenRouting[], nLayer: number): Record<string, Plain> {
  const T = routing.length;
  const layerMajor = (width: number, pick: (r: TokenRouting, l: number) => number[]): Plain => {
    const data: number[] = [];
    for (let l = 0; l < nLayer; l++) for (const r of routing) data.push(...pick(r, l));
    return { dims: width === 1 ? [nLayer, T] : [nLayer, T, width], data };
  };
  const out: Record<string, Plain> = {
    route_loops: layerMajor(1, (r, l) => [r.loops[l]]),
    route_lambda: layerMajor(1, (r, l) => [r.lambdas[l]]),
    route_experts: layerMajor(2, (r, l) => r.experts[l]),
    route_weights: layerMajor(2, (r, l) => r.weights[l]),
  };
  if (routing[0]?.loopProbs) out.route_loop_probs = layerMajor(routing[0].loopProbs[0].length, (r, l) => r.loopProbs![l]);
  if (routing[0]?.ffnShare) out.route_ffn_share = layerMajor(1, (r, l) => [r.ffnShare![l]]);
  return out;
}

function logitsTensor(r: StepResult): Plain {
  return { dims: [1, r.numLogits, r.vocab], data: Array.from(r.logits) };
}

async function run(dir: string, requestPath: string, outPath: string): Promise<void> {
  const m = await open(dir);
  const { chunks } = readJson(requestPath) as { chunks: number[][] };
  const steps = [];
  for (const ids of chunks) {
    const r = await m.session.step(ids, m.cache, ids.length);
    steps.push({ logits: logitsTensor(r), ...routingTensors(r.routing, m.manifest.architecture.n_layer) });
  }
  writeFileSync(outPath, JSON.stringify({ steps }));
  await m.session.release();
}

function argmax(row: Float32Array): number {
  let best = 0;
  for (let v = 1; v < row.length; v++) if (row[v] > row[best]) best = v;
  return best;
}

async function greedy(dir: string, outPath: string): Promise<void> {
  const m = await open(dir);
  const tv = m.manifest.test_vectors;
  if (!tv) throw new Error(`${dir}: manifest.json has no test_vectors`);
  const ids: number[] = [];
  let r = await m.session.step(tv.prompt_ids, m.cache, 1);
  for (let n = 0; n < tv.greedy_ids.length; n++) {
    const best = argmax(r.logits.subarray(0, r.vocab));
    ids.push(best);
    r = await m.session.step([best], m.cache, 1);
  }
  writeFileSync(outPath, JSON.stringify({ greedy_ids: ids }));
  await m.session.release();
}

async function tokenize(dir: string, textsPath: string, outPath: string): Promise<void> {
  const tok = CodeTokenizer.load(dir, readManifest(dir));
  const ids = (readJson(textsPath) as string[]).map((t) => tok.encode(t));
  const decoded = ids.map((x) => tok.decode(x));
  writeFileSync(outPath, JSON.stringify({ ids, decoded }));
}

const modes: Record<string, (...args: string[]) => Promise<void>> = {
  run: (d, req, out) => run(d, req, out),
  greedy: (d, out) => greedy(d, out),
  tokenize: (d, texts, out) => tokenize(d, texts, out),
};
const [mode, ...args] = process.argv.slice(2);
if (!modes[mode]) {
  console.error('usage: node --import tsx models/toolchain/parity_node.ts run|greedy|tokenize MODEL_DIR ...');
  process.exit(2);
}
modes[mode](...args).catch((e: Error) => {
  console.error(e.stack ?? String(e));
  process.exit(1);
});
