// GPU benchmark for issue 6, one script, CPU provider vs GPU providers on the same machine:
//   - prefill of ~1k tokens (median ms), decode tokens/s after it (median over repeats), for the
//     product path (ModelSession: KV cache on the host) and, on GPU providers, with the KV cache
//     kept on the device (preferredOutputLocation 'gpu-buffer', presents fed back as pasts);
//   - end-to-end warm completion p50 through the Engine (what the editor gets);
//   - greedy-token identity against the CPU provider on N prompts cut from real source files.
// A provider that does not load is recorded with its reason; the script still writes its report.
// Usage: node dist/gpuBench.js [--model DIR] [--providers cpu,webgpu] [--prompts 100] [--repeats 5]
//        [--prefill 1024] [--decode 64] [--gen 16] [--budget-s 240] [--out DIR]
// Writes gpu_bench.json + gpu_bench.md into --out, else $OUT, else bench/results/.
import { mkdirSync, readFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { InferenceSession, Tensor } from 'onnxruntime-node';
import type { ExecutionProvider } from '../../../common/protocol';
import { machineName, writeAtomic } from './bench';
import { EmbeddingRows, tokenInput } from '../engine/embeddingRows';
import { Engine } from '../engine/engine';
import { argmax } from '../engine/generator';
import { KvCache } from '../engine/kvCache';
import { defaultModelOrder, graphFileFor, kvHeads, listModelFolders, Manifest, readManifest } from '../engine/modelFolder';
import { chooseThreads, sessionOptions } from '../engine/providers';
import { ModelSession, webgpuMaxChunk } from '../engine/session';
import { median, percentile } from '../engine/telemetry';
import { pickSamples, Sample, sourceFiles, typed } from './samples';
import { CodeTokenizer } from '../engine/tokenizer';

interface Opts {
  model: string; providers: ExecutionProvider[]; prompts: number; repeats: number; prefill: number; decode: number;
  gen: number; budgetS: number; out: string; root: string; e2eRequests: number;
}

const SECONDARY_PROMPTS = 20;
// Only the repository's own sources: the GPU machine gets no node_modules beyond onnxruntime.
const SOURCE_DIRS = ['backend/src', 'backend/src/engine', 'backend/src/tools', 'common', 'extension/src', 'models/toolchain', 'scripts', 'test/unit/backend'];
const MIN_FILE_BYTES = 3000;

/** The model graph run directly: greedy steps with the KV cache on the host or on the device. */
class RawRunner {
  private pastK: Tensor[] = [];
  private pastV: Tensor[] = [];
  private length = 0;
  private constructor(readonly session: InferenceSession, private readonly m: Manifest, readonly gpuKv: boolean, readonly maxChunk: number,
    private readonly embeddings?: EmbeddingRows) {}

  static async create(dir: string, m: Manifest, provider: ExecutionProvider, gpuKv: boolean, maxChunk: number): Promise<RawRunner> {
    const file = path.join(dir, graphFileFor(m, provider));
    const o: InferenceSession.SessionOptions = { ...sessionOptions(provider, 0) };
    if (gpuKv) {
      const loc: Record<string, 'gpu-buffer'> = {};
      for (let i = 0; i < m.architecture.n_layer; i++) {
        loc[m.graph.outputs.present_key.replace('{i}', String(i))] = 'gpu-buffer';
        loc[m.graph.outputs.present_value.replace('{i}', String(i))] = 'gpu-buffer';
      }
      o.preferredOutputLocation = loc;
    }
    return new RawRunner(await InferenceSession.create(file, o), m, gpuKv, maxChunk, EmbeddingRows.forModel(dir, m));
  }

  reset(): void {
    for (const t of [...this.pastK, ...this.pastV]) t.dispose();
    const { n_layer } = this.m.architecture;
    const heads = kvHeads(this.m);
    const empty = () => new Tensor('float32', new Float32Array(0), [1, heads, 0, this.m.graph.head_dim]);
    this.pastK = Array.from({ length: n_layer }, empty);
    this.pastV = Array.from({ length: n_layer }, empty);
    this.length = 0;
  }

  /** Runs `ids` (in pieces of maxChunk when set) and returns the last position's logits. */
  async feed(ids: readonly number[]): Promise<Float32Array> {
    if (this.length === 0 && this.pastK.length === 0) this.reset();
    const max = this.maxChunk > 0 ? this.maxChunk : ids.length;
    let logits: Float32Array = new Float32Array(0);
    for (let i = 0; i < ids.length; i += max) logits = await this.run(ids.slice(i, i + max));
    return logits;
  }

  private async run(ids: readonly number[]): Promise<Float32Array> {
    const g = this.m.graph;
    const feeds: Record<string, Tensor> = {
      [(this.embeddings ? g.inputs.inputs_embeds : g.inputs.input_ids)!]: tokenInput(ids, this.embeddings),
      [g.inputs.num_logits]: new Tensor('int64', BigInt64Array.from([1n]), [1]),
    };
    for (let i = 0; i < this.m.architecture.n_layer; i++) {
      feeds[g.inputs.past_key.replace('{i}', String(i))] = this.pastK[i];
      feeds[g.inputs.past_value.replace('{i}', String(i))] = this.pastV[i];
    }
    const out = await this.session.run(feeds);
    for (const t of [...this.pastK, ...this.pastV]) t.dispose();
    this.pastK = this.pastK.map((_, i) => out[g.outputs.present_key.replace('{i}', String(i))]);
    this.pastV = this.pastV.map((_, i) => out[g.outputs.present_value.replace('{i}', String(i))]);
    this.length += ids.length;
    const logits = out[g.outputs.logits];
    const data = (await logits.getData()) as Float32Array;
    const vocab = logits.dims[2];
    const last = data.slice(data.length - vocab);
    for (const [name, t] of Object.entries(out)) if (name !== g.outputs.logits && !name.startsWith('present')) t.dispose();
    return last;
  }

  async greedy(prompt: readonly number[], n: number): Promise<number[]> {
    this.reset();
    let logits = await this.feed(prompt);
    const ids: number[] = [];
    for (let k = 0; k < n; k++) {
      const id = argmax(logits);
      ids.push(id);
      if (k + 1 < n) logits = await this.feed([id]);
    }
    return ids;
  }

  async release(): Promise<void> {
    for (const t of [...this.pastK, ...this.pastV]) t.dispose();
    this.embeddings?.close();
    await this.session.release();
  }
}

/** FIM prompt ids (PSM), prefix cut to its last `budget` tokens, suffix to 64. */
function fimIds(tok: CodeTokenizer, m: Manifest, s: Sample, budget: number): number[] {
  const sp = m.tokenizer.special_ids;
  const pre = tok.encode(s.prefix.slice(-budget * 6)).slice(-budget);
  const suf = tok.encode(s.suffix.slice(0, 64 * 6)).slice(0, 64);
  return [sp.fim_prefix, ...pre, sp.fim_suffix, ...suf, sp.fim_middle];
}

const r2 = (x: number | null) => (x === null || !Number.isFinite(x) ? null : Math.round(x * 100) / 100);

/** Prefill `prefillIds` on an empty cache, then `decode` single-token steps: medians over repeats (after one warm-up). */
async function timeRaw(r: RawRunner, prefillIds: number[], decodeIds: number[], repeats: number) {
  const pre: number[] = [];
  const dec: number[] = [];
  for (let k = 0; k <= repeats; k++) {
    r.reset();
    let t0 = performance.now();
    await r.feed(prefillIds);
    const p = performance.now() - t0;
    t0 = performance.now();
    for (const id of decodeIds) await r.feed([id]);
    const d = performance.now() - t0;
    if (k > 0) { pre.push(p); dec.push(d); }
  }
  const decMs = median(dec);
  return { prefillMs: r2(median(pre)), decodeTokensPerSecond: r2((decodeIds.length / decMs) * 1000), decodeStepMs: r2(decMs / decodeIds.length) };
}

async function timeSession(s: ModelSession, prefillIds: number[], decodeIds: number[], repeats: number) {
  const pre: number[] = [];
  const dec: number[] = [];
  for (let k = 0; k <= repeats; k++) {
    const cache = new KvCache(s.kv);
    let t0 = performance.now();
    await s.step(prefillIds, cache, 1);
    const p = performance.now() - t0;
    t0 = performance.now();
    for (const id of decodeIds) await s.step([id], cache, 1);
    const d = performance.now() - t0;
    cache.dispose();
    if (k > 0) { pre.push(p); dec.push(d); }
  }
  const decMs = median(dec);
  return { prefillMs: r2(median(pre)), decodeTokensPerSecond: r2((decodeIds.length / decMs) * 1000), decodeStepMs: r2(decMs / decodeIds.length) };
}

function errText(e: unknown): string {
  return String((e as Error)?.message ?? e).split('\n')[0].slice(0, 500);
}

export async function runGpuBench(o: Opts, log: (s: string) => void) {
  const t0 = performance.now();
  const elapsed = () => (performance.now() - t0) / 1000;
  const m = readManifest(o.model);
  const tok = CodeTokenizer.load(o.model, m);
  const ctx = m.architecture.context_length;
  const prefillN = Math.max(1, Math.min(o.prefill, ctx - o.decode - 1));
  const text = sourceFiles(o.root, SOURCE_DIRS, MIN_FILE_BYTES).map((f) => readFileSync(f, 'utf8')).join('\n').slice(0, 400_000);
  let stream = tok.encode(text.slice(0, (prefillN + o.decode) * 8));
  while (stream.length < prefillN + o.decode) stream = stream.concat(stream.length ? stream : [6]);
  const prefillIds = stream.slice(0, prefillN);
  const decodeIds = stream.slice(prefillN, prefillN + o.decode);
  const samples = pickSamples(sourceFiles(o.root, SOURCE_DIRS, MIN_FILE_BYTES), o.prompts, 6);
  const promptBudget = Math.max(16, Math.min(512, ctx - o.gen - 80));
  const prompts = samples.map((s) => fimIds(tok, m, s, promptBudget));
  log(`model ${m.name} (${m.architecture.parameters} params), prefill ${prefillN}, decode ${o.decode}, ${prompts.length} prompts`);

  const results: Record<string, unknown>[] = [];
  let cpuIds: number[][] | null = null;
  for (const provider of o.providers) {
    const res: Record<string, unknown> = { provider, graph: graphFileFor(m, provider) };
    results.push(res);
    // 1. Product path: ModelSession (host KV cache; on webgpu, prompts in pieces of webgpuMaxChunk()).
    try {
      const s = await ModelSession.create(o.model, m, provider, 0);
      try {
        if (s.activeProvider !== provider) throw new Error(s.provider.reason);
        res.session = { maxChunk: s.maxChunk, ...(await timeSession(s, prefillIds, decodeIds, o.repeats)) };
      } finally {
        await s.release();
      }
      log(`${provider} session: ${JSON.stringify(res.session)}`);
    } catch (e) {
      res.error = errText(e);
      log(`${provider}: not usable: ${res.error}`);
      continue;
    }
    // 2. Raw graph runs: host KV vs device KV (GPU providers), whole prefill vs pieces; identity vs cpu.
    const variants = provider === 'cpu'
      ? [{ name: 'host-kv', gpuKv: false, maxChunk: 0 }]
      // first the path the backend would take (pieces, see webgpuMaxChunk), on all prompts; the
      // others on the first SECONDARY_PROMPTS only
      : [{ name: `gpu-kv-chunk${webgpuMaxChunk() || 24}`, gpuKv: true, maxChunk: webgpuMaxChunk() || 24 },
        { name: 'gpu-kv', gpuKv: true, maxChunk: 0 }, { name: 'host-kv', gpuKv: false, maxChunk: 0 }];
    const raw: Record<string, unknown> = {};
    res.raw = raw;
    for (const v of variants) {
      const entry: Record<string, unknown> = { gpuKv: v.gpuKv, maxChunk: v.maxChunk };
      raw[v.name] = entry;
      let r: RawRunner | undefined;
      try {
        r = await RawRunner.create(o.model, m, provider, v.gpuKv, v.maxChunk);
        Object.assign(entry, await timeRaw(r, prefillIds, decodeIds, o.repeats));
        // identity on the prompts (cpu: the reference), within the time budget
        const ids: number[][] = [];
        const limit = provider === 'cpu' || v === variants[0] ? prompts.length : Math.min(SECONDARY_PROMPTS, prompts.length);
        for (const p of prompts.slice(0, limit)) {
          if (elapsed() > o.budgetS) break;
          ids.push(await r.greedy(p, o.gen));
        }
        if (provider === 'cpu') {
          cpuIds = ids;
          entry.promptsRun = ids.length;
        } else if (cpuIds) {
          const n = Math.min(ids.length, cpuIds.length);
          const diff: { prompt: number; file: string; firstDiff: number }[] = [];
          for (let i = 0; i < n; i++) {
            const j = ids[i].findIndex((x, k) => x !== cpuIds![i][k]);
            if (j >= 0) diff.push({ prompt: i, file: samples[i].file, firstDiff: j });
          }
          entry.identity = { prompts: n, identical: n - diff.length, tokensPerPrompt: o.gen, firstDiffs: diff.slice(0, 10) };
        }
      } catch (e) {
        entry.error = errText(e);
      } finally {
        await r?.release().catch(() => undefined);
      }
      log(`${provider} ${v.name}: ${JSON.stringify(entry)}`);
      if (provider === 'cpu' && entry.error) throw new Error(`the cpu reference failed: ${entry.error}`);
    }
    // 3. End to end through the Engine: new context, then one more typed character (warm, KV reuse).
    if (elapsed() < o.budgetS + 30) {
      try {
        res.endToEnd = await endToEnd(o, m, provider, samples.slice(0, o.e2eRequests));
      } catch (e) {
        res.endToEnd = { error: errText(e) };
      }
      log(`${provider} end-to-end: ${JSON.stringify(res.endToEnd)}`);
    }
  }
  return {
    date: new Date().toISOString(), machine: machineName(), node: process.version, loadAverage: os.loadavg().map(r2),
    model: { name: m.name, parameters: m.architecture.parameters, kind: m.architecture.kind, attention: m.graph.attention ?? null, dir: o.model },
    settings: { prefillTokens: prefillN, decodeSteps: o.decode, repeats: o.repeats, prompts: prompts.length, greedyTokens: o.gen, promptBudget, intraOpThreads: chooseThreads(0), e2eRequests: o.e2eRequests },
    providers: results, wallSeconds: r2(elapsed()),
  };
}

async function endToEnd(o: Opts, m: Manifest, provider: ExecutionProvider, samples: Sample[]) {
  const engine = new Engine({ modelDirs: [path.dirname(path.resolve(o.model))], provider, threads: 0 });
  try {
    const st = await engine.start(path.basename(path.resolve(o.model)));
    if (!st.ok) throw new Error(st.error);
    if (engine.activeModel?.session.activeProvider !== provider) throw new Error(engine.providerStatus().reason);
    const req = (id: string, prefix: string, suffix: string) => engine.complete({ requestId: id, languageId: 'typescript', prefix, suffix, maxTokens: 16 });
    await req('warmup', samples[0].prefix, samples[0].suffix);
    const fresh: number[] = [];
    const typedMs: number[] = [];
    const gen: number[] = [];
    const tokenize: number[] = [];
    const model: number[] = [];
    for (const [i, s] of samples.entries()) {
      const a = await req(`a${i}`, s.prefix, s.suffix);
      const t = typed(s, 1);
      const b = await req(`b${i}`, t.prefix, t.suffix);
      if (a.error || b.error) throw new Error(a.error ?? b.error);
      fresh.push(a.timings.totalMs);
      typedMs.push(b.timings.totalMs);
      gen.push(a.timings.generatedTokens, b.timings.generatedTokens);
      tokenize.push(a.timings.tokenizeMs, b.timings.tokenizeMs);
      model.push(a.timings.prefillMs + a.timings.decodeMs, b.timings.prefillMs + b.timings.decodeMs);
    }
    const p = (xs: number[], q: number) => r2(percentile([...xs].sort((x, y) => x - y), q));
    return {
      requests: fresh.length * 2, maxTokens: 16,
      newContextMs: { p50: p(fresh, 50), p95: p(fresh, 95) }, typedOneCharMs: { p50: p(typedMs, 50), p95: p(typedMs, 95) },
      generatedTokensP50: p(gen, 50), tokenizeMsP50: p(tokenize, 50), prefillPlusDecodeMsP50: p(model, 50), reason: engine.providerStatus().reason,
    };
  } finally {
    await engine.dispose();
  }
}

export function toMarkdown(j: Awaited<ReturnType<typeof runGpuBench>>): string {
  const L: string[] = [];
  L.push(`# GPU bench: ${j.model.name} (${j.model.parameters} params, ${j.model.kind}, attention ${j.model.attention})`, '');
  L.push(`${j.date} · ${j.machine} · node ${j.node} · prefill ${j.settings.prefillTokens} tok · decode ${j.settings.decodeSteps} steps · median of ${j.settings.repeats} · ${j.settings.prompts} prompts × ${j.settings.greedyTokens} greedy tokens · wall ${j.wallSeconds} s`, '');
  L.push('| provider | path | prefill ms | decode tok/s | decode ms/step | greedy identical to cpu | note |', '|---|---|---|---|---|---|---|');
  for (const p of j.providers as Record<string, any>[]) {
    if (p.error) { L.push(`| ${p.provider} | — | | | | | not usable: ${p.error} |`); continue; }
    const s = p.session;
    L.push(`| ${p.provider} | engine session (maxChunk ${s.maxChunk}) | ${s.prefillMs} | ${s.decodeTokensPerSecond} | ${s.decodeStepMs} | | |`);
    for (const [name, r] of Object.entries(p.raw ?? {}) as [string, any][]) {
      const id = r.identity ? `${r.identity.identical}/${r.identity.prompts}` : (p.provider === 'cpu' ? 'reference' : '');
      L.push(`| ${p.provider} | raw ${name} | ${r.prefillMs ?? ''} | ${r.decodeTokensPerSecond ?? ''} | ${r.decodeStepMs ?? ''} | ${id} | ${r.error ?? ''} |`);
    }
  }
  L.push('', '| provider | end-to-end new context p50 / p95 ms | typed one more char p50 / p95 ms | tokens p50 | tokenize ms p50 | prefill+decode ms p50 |', '|---|---|---|---|---|---|');
  for (const p of j.providers as Record<string, any>[]) {
    const e = p.endToEnd;
    if (!e) continue;
    L.push(e.error ? `| ${p.provider} | error: ${e.error} | | | | |` : `| ${p.provider} | ${e.newContextMs.p50} / ${e.newContextMs.p95} | ${e.typedOneCharMs.p50} / ${e.typedOneCharMs.p95} | ${e.generatedTokensP50} | ${e.tokenizeMsP50} | ${e.prefillPlusDecodeMsP50} |`);
  }
  return L.join('\n') + '\n';
}

function defaultModel(root: string): string {
  const real = defaultModelOrder(listModelFolders([path.join(root, 'models')]))[0];
  if (!real) throw new Error(`no model folder under ${path.join(root, 'models')}; pass --model DIR`);
  return real.path;
}

function parse(argv: string[]): Opts {
  const f = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    if (!argv[i].startsWith('--')) throw new Error(`unexpected argument ${argv[i]}`);
    const [k, v] = argv[i].slice(2).split('=', 2);
    f.set(k, v ?? argv[++i] ?? '');
  }
  const num = (k: string, d: number) => {
    const v = f.has(k) ? Number(f.get(k)) : d;
    if (!Number.isFinite(v) || v < 0) throw new Error(`--${k} needs a number ≥ 0`);
    return Math.floor(v);
  };
  const root = path.resolve(f.get('root') ?? process.cwd());
  return {
    root,
    model: path.resolve(f.get('model') ?? defaultModel(root)),
    providers: (f.get('providers') ?? 'cpu,webgpu').split(',').filter(Boolean) as ExecutionProvider[],
    prompts: num('prompts', 100), repeats: Math.max(1, num('repeats', 5)), prefill: num('prefill', 1024),
    decode: Math.max(1, num('decode', 64)), gen: Math.max(1, num('gen', 16)), budgetS: num('budget-s', 240),
    e2eRequests: Math.max(1, num('e2e', 20)),
    out: path.resolve(f.get('out') ?? process.env.OUT ?? path.join(root, 'bench', 'results')),
  };
}

async function main(): Promise<void> {
  let o: Opts;
  try {
    o = parse(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`gpu-bench: ${(e as Error).message}\n`);
    process.exit(2);
  }
  if (!o.providers.includes('cpu')) o.providers.unshift('cpu'); // the reference
  o.providers = ['cpu', ...o.providers.filter((p) => p !== 'cpu')];
  const log = (s: string) => process.stderr.write(`[gpu-bench ${new Date().toISOString().slice(11, 19)}] ${s}\n`);
  const j = await runGpuBench(o, log);
  mkdirSync(o.out, { recursive: true });
  writeAtomic(path.join(o.out, 'gpu_bench.json'), JSON.stringify(j, null, 2) + '\n');
  const md = toMarkdown(j);
  writeAtomic(path.join(o.out, 'gpu_bench.md'), md);
  process.stdout.write(md + `\nreport: ${path.join(o.out, 'gpu_bench.json')}\n`);
}

if (require.main === module) {
  main().catch((e) => {
    process.stderr.write(`gpu-bench failed: ${(e as Error).stack ?? e}\n`);
    process.exit(1);
  });
}
