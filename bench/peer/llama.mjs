// The llama.cpp side of `npm run bench:peer`, run as its own child process (so its peak RSS is its
// own). It replays the plan our side wrote: the same prompt ids, and as many tokens picked per request
// as our engine picked, greedy, on the dense source GGUF through node-llama-cpp (installed by the
// runner outside the checkout: never a product dependency).
//   node bench/peer/llama.mjs --lib DIR --gguf FILE --threads N --plan FILE --out FILE
//
// KV cache reuse: a LlamaContextSequence keeps the tokens it has evaluated. Before each request we
// do what node-llama-cpp's own LlamaCompletion does (dist/evaluator/LlamaCompletion.js):
// adaptStateToTokens(prompt minus its last token, allowShift = false) erases the state from the first
// token that differs, and evaluate() then runs only the tokens from sequence.nextTokenIndex on (the
// last prompt token always runs again, to give the next token's logits). A cold request clears the
// sequence first (clearHistory), so nothing is reused.
import { readFileSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';

function flag(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
}

function peakRssBytes() {
  const m = /VmHWM:\s+(\d+)\s*kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) * 1024 : process.memoryUsage.rss();
}

const lib = flag('lib');
const gguf = flag('gguf');
const threads = Number(flag('threads', '2'));
const plan = JSON.parse(readFileSync(flag('plan'), 'utf8'));
const outFile = flag('out');
const loadAverageAtStart = os.loadavg().map((x) => Math.round(x * 100) / 100);

const pkgDir = path.join(lib, 'node_modules', 'node-llama-cpp');
const version = JSON.parse(readFileSync(path.join(pkgDir, 'package.json'), 'utf8')).version;
const { getLlama, LlamaLogLevel } = await import(pathToFileURL(path.join(pkgDir, 'dist', 'index.js')).href);

const t0 = performance.now();
// CPU only, prebuilt binaries only (never a build or a download here), at most `threads` threads.
const llama = await getLlama({ gpu: false, build: 'never', maxThreads: threads, logLevel: LlamaLogLevel.error, progressLogs: false });
const model = await llama.loadModel({ modelPath: gguf, gpuLayers: 0 });
// Room for the longest prompt (1,000 tokens) plus what is generated; ideal = min = threads, so
// every evaluation uses exactly `threads` threads.
const context = await model.createContext({ contextSize: 2048, sequences: 1, threads: { ideal: threads, min: threads } });
const seq = context.getSequence();
const loadMs = performance.now() - t0;
const rssAfterLoadBytes = process.memoryUsage.rss();

const infill = model.tokens.infill;
let tokenizerAgrees = 0;
let tokenizerDiffers = 0;

/**
 * One request: tokenize its text (timed, as a server would; checked against our ids), reuse the
 * sequence's common prefix unless cold, evaluate the rest, take `picks` greedy tokens.
 */
async function request(req, { cold }) {
  if (cold) await seq.clearHistory();
  const start = performance.now();
  const pre = model.tokenize(req.prefixText, false);
  const suf = model.tokenize(req.suffixText, false);
  const own = plan.order === 'spm'
    ? [infill.prefix, infill.suffix, ...suf, infill.middle, ...pre]
    : [infill.prefix, ...pre, infill.suffix, ...suf, infill.middle];
  // Our engine heals an SPM prompt's last token away (it picks it again): one token fewer.
  const healed = plan.order === 'spm' && own.length === req.ids.length + 1;
  if ((own.length === req.ids.length || healed) && req.ids.every((t, i) => t === own[i])) tokenizerAgrees++;
  else tokenizerDiffers++;
  // Evaluate our ids, not its own, so that both engines run exactly the same token sequence.
  const ids = req.ids;
  await seq.adaptStateToTokens(ids.slice(0, -1), false);
  const reusedTokens = seq.nextTokenIndex;
  const evalStart = performance.now();
  const stamps = [];
  // temperature 0: greedy; yieldEogToken: an end-of-text token is picked like any other, so the
  // count of picks matches ours whatever the model says.
  for await (const _token of seq.evaluate(ids.slice(reusedTokens), { temperature: 0, yieldEogToken: true })) {
    stamps.push(performance.now());
    if (stamps.length >= req.picks) break;
  }
  const picks = stamps.length;
  return {
    firstTokenMs: stamps[0] - start,
    totalMs: stamps[picks - 1] - start,
    // Includes picking the first token from the logits (ours: prefillMs stops at the logits).
    prefillMs: stamps[0] - evalStart,
    promptTokens: ids.length,
    reusedTokens,
    generatedTokens: picks,
    // Each pick after the first needed one model step on the token before it.
    decodeMsPerToken: picks > 1 ? (stamps[picks - 1] - stamps[0]) / (picks - 1) : null,
  };
}

await request(plan.warmup, { cold: true }); // untimed, as on our side

const prefill = [];
for (const p of plan.prefill) {
  const runs = [];
  for (const r of p.runs) runs.push(await request(r, { cold: true }));
  prefill.push({ promptTokens: p.promptTokens, runs });
}
const completions = [];
for (const c of plan.completions) {
  const cold = await request(c.cold, { cold: true });
  const warm = await request(c.warm, { cold: false });
  // The first keystroke the editor's cache could not answer, when it is not the warm one (our side decides).
  const editor = c.editor ? await request(c.editor, { cold: false }) : undefined;
  completions.push({ file: c.file, cold, warm, ...(editor ? { editor } : {}) });
}

const release = llama.llamaCppRelease;
const result = {
  engine: 'llama.cpp',
  label: `llama.cpp ${release?.release ?? ''} via node-llama-cpp ${version} (${llama.buildType} binaries, CPU, ${threads} threads, `
    + `context ${context.contextSize}, batch ${context.batchSize}, flash attention ${context.flashAttention}), ${path.basename(gguf)}`,
  versions: { 'node-llama-cpp': version, 'llama.cpp': String(release?.release ?? 'unknown') },
  threads,
  loadAverageAtStart,
  loadMs,
  rssAfterLoadBytes,
  peakRssBytes: 0,
  prefill,
  completions,
  notes: [
    `its tokenizer gave our ids for ${tokenizerAgrees} of ${tokenizerAgrees + tokenizerDiffers} prompts (our ids are what it evaluated)`,
    'KV cache reuse: sequence.adaptStateToTokens(prompt without its last token, false), then evaluate() from sequence.nextTokenIndex (as LlamaCompletion does)',
    'prefill = evaluating the prompt until the first token is picked; decode per token = time between the first and last pick / (picks - 1)',
  ],
};
await context.dispose();
await model.dispose();
await llama.dispose();
result.peakRssBytes = peakRssBytes();
writeFileSync(outFile, `${JSON.stringify(result, null, 2)}\n`);
