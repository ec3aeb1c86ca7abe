// Runs an exported model folder with onnxruntime-node (the backend's runtime) for the
// Python parity test, and tokenizes text with @huggingface/tokenizers.
//
//   node models/toolchain/parity_node.mjs run MODEL_DIR REQUEST.json OUT.json
//     REQUEST: {"chunks": [[ids of the prefill], [id], [id], ...]}  (teacher-forced steps)
//     OUT: {"steps": [{logits, logits_shape, route_loops, route_experts, ...}], "ort_version"}
//   node models/toolchain/parity_node.mjs greedy MODEL_DIR OUT.json
//     greedy decode of manifest.test_vectors.prompt_ids; OUT: {"greedy_ids": [...]}
//   node models/toolchain/parity_node.mjs tokenize MODEL_DIR TEXTS.json OUT.json
//     TEXTS: ["...", ...]; OUT: {"ids": [[...], ...], "decoded": ["...", ...]}
import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

const require = createRequire(import.meta.url);
const ort = require('onnxruntime-node');

const readJson = (p) => JSON.parse(readFileSync(p, 'utf8'));

class Model {
  static async open(dir) {
    const m = new Model();
    m.manifest = readJson(join(dir, 'manifest.json'));
    m.session = await ort.InferenceSession.create(join(dir, m.manifest.graph.file), {
      executionProviders: ['cpu'],
    });
    const a = m.manifest.architecture;
    m.nLayer = a.n_layer;
    m.nHead = a.n_kv_head ?? a.n_head; // the cache holds the key/value heads (fewer with grouped-query attention)
    m.headDim = m.manifest.graph.head_dim;
    m.reset();
    return m;
  }

  reset() {
    const empty = new ort.Tensor('float32', new Float32Array(0), [1, this.nHead, 0, this.headDim]);
    this.past = {};
    for (let i = 0; i < this.nLayer; i++) {
      this.past[`past_key_${i}`] = empty;
      this.past[`past_value_${i}`] = empty;
    }
  }

  async step(ids, numLogits) {
    const feeds = {
      input_ids: new ort.Tensor('int64', BigInt64Array.from(ids.map(BigInt)), [1, ids.length]),
      num_logits: new ort.Tensor('int64', BigInt64Array.from([BigInt(numLogits)]), [1]),
      ...this.past,
    };
    const out = await this.session.run(feeds);
    for (let i = 0; i < this.nLayer; i++) {
      this.past[`past_key_${i}`] = out[`present_key_${i}`];
      this.past[`past_value_${i}`] = out[`present_value_${i}`];
    }
    return out;
  }
}

const plain = (t) => ({ dims: t.dims, data: Array.from(t.data, (v) => (typeof v === 'bigint' ? Number(v) : v)) });

async function run(dir, requestPath, outPath) {
  const model = await Model.open(dir);
  const { chunks } = readJson(requestPath);
  const steps = [];
  for (const ids of chunks) {
    const out = await model.step(ids, ids.length);
    const step = {};
    for (const name of ['logits', 'route_loops', 'route_lambda', 'route_experts', 'route_weights', 'route_loop_probs']) {
      step[name] = plain(out[name]);
    }
    steps.push(step);
  }
  writeFileSync(outPath, JSON.stringify({ steps }));
}

async function greedy(dir, outPath) {
  const model = await Model.open(dir);
  const { prompt_ids: prompt, greedy_ids: expected } = model.manifest.test_vectors;
  const ids = [];
  let out = await model.step(prompt, 1);
  for (let n = 0; n < expected.length; n++) {
    const logits = out.logits.data;
    let best = 0;
    for (let v = 1; v < logits.length; v++) if (logits[v] > logits[best]) best = v;
    ids.push(best);
    out = await model.step([best], 1);
  }
  writeFileSync(outPath, JSON.stringify({ greedy_ids: ids }));
}

async function tokenize(dir, textsPath, outPath) {
  const { Tokenizer } = await import('@huggingface/tokenizers');
  const tok = new Tokenizer(readJson(join(dir, 'tokenizer.json')), {});
  const ids = readJson(textsPath).map((t) => tok.encode(t, { add_special_tokens: false }).ids);
  const decoded = ids.map((x) => tok.decode(x, { skip_special_tokens: false }));
  writeFileSync(outPath, JSON.stringify({ ids, decoded }));
}

const [mode, ...args] = process.argv.slice(2);
const modes = { run, greedy, tokenize };
if (!modes[mode]) {
  console.error('usage: parity_node.mjs run|greedy|tokenize MODEL_DIR ...');
  process.exit(2);
}
await modes[mode](...args);
