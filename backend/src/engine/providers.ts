// Execution providers: which ones this onnxruntime-node build offers here, probing GPU ones in a
// child process (a native crash there cannot take the backend down), and creating the session.
import { execFile } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { InferenceSession, listSupportedBackends } from 'onnxruntime-node';
import type { ExecutionProvider, ProviderPreference, ProviderStatus } from '../../../common/protocol';
import { isExecutionProvider } from '../../../common/vocabulary';

/** GPU providers in the order `auto` tries them; cpu always comes last. */
const AUTO_ORDER: ExecutionProvider[] = ['cuda', 'dml', 'coreml', 'webgpu'];
const PROBE_TIMEOUT_MS = 60_000;

export interface SessionChoice {
  session: InferenceSession;
  status: ProviderStatus;
}

export interface ProbeFeeds {
  /** Graph input names of the KV cache, with the shape [1, n_kv_head, 0, head_dim] they take when empty. */
  pastNames: string[];
  nHead: number;
  headDim: number;
  /** The token input: ids, or embedding rows (graph.embeddings), of which the probe feeds one zero row. */
  inputIds?: string;
  inputsEmbeds?: { name: string; dModel: number };
  numLogits: string;
  /** Graphs with kv "shared": the past_length input (the probe feeds small fixed buffers). */
  pastLength?: string;
}

/** Providers this build can offer on this platform (bundled, or whose library is installed), cpu last. */
export function availableProviders(): ExecutionProvider[] {
  const found = new Set<ExecutionProvider>();
  for (const b of listSupportedBackends()) {
    if (!isExecutionProvider(b.name)) continue;
    if (b.bundled || providerLibraryInstalled(b.name)) found.add(b.name);
  }
  found.add('cpu');
  return [...AUTO_ORDER.filter((p) => found.has(p)), 'cpu'];
}

/** The providers `auto` may use here, in order (cpu last), and why any was left out. */
export function autoCandidates(available = availableProviders()): { candidates: ExecutionProvider[]; skipped: string } {
  const candidates: ExecutionProvider[] = [];
  let skipped = '';
  for (const p of available) {
    if (p === 'webgpu' && !gpuDevicePresent()) skipped = 'webgpu skipped: no GPU device found (a software Vulkan adapter would be slower than cpu)';
    else candidates.push(p);
  }
  return { candidates, skipped };
}

/**
 * Session options that keep an idle backend at 0% CPU (no spinning thread pools) and its memory
 * small: without the CPU arena, activations go back to the heap after each run instead of staying
 * reserved at their largest (a 1,024-token prefill of the 0.5B model: RSS 874 instead of 1,139 MB
 * afterwards, peak 948 instead of 1,091 MB; onnxruntime-node 1.30, measured).
 */
export function sessionOptions(provider: ExecutionProvider, threads: number): InferenceSession.SessionOptions {
  return {
    executionProviders: [provider],
    enableCpuMemArena: false,
    intraOpNumThreads: chooseThreads(threads),
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
    logSeverityLevel: 3,
    extra: { 'session.intra_op.allow_spinning': '0', 'session.inter_op.allow_spinning': '0' },
  };
}

/** 0 = choose: all cores on a small machine, half of them (at most 4) on a bigger one. */
export function chooseThreads(threads: number): number {
  if (threads > 0) return Math.floor(threads);
  const cpus = os.availableParallelism?.() ?? os.cpus().length;
  return Math.max(1, Math.min(4, cpus <= 2 ? cpus : Math.floor(cpus / 2)));
}

/**
 * Creates the session on the first provider of the preference that works: GPU providers are probed in
 * a child process first; cpu is the fallback. The status says which runs and why.
 */
export async function createSession(
  fileFor: (provider: ExecutionProvider) => string, pref: ProviderPreference, threads: number, feeds: ProbeFeeds,
): Promise<SessionChoice> {
  const available = availableProviders();
  const tried: ProviderStatus['tried'] = [];
  let candidates: ExecutionProvider[];
  let skipped = '';
  if (pref === 'auto') {
    ({ candidates, skipped } = autoCandidates(available));
  } else {
    candidates = pref === 'cpu' ? ['cpu'] : [pref, 'cpu'];
  }
  for (const provider of candidates) {
    if (provider !== 'cpu' && !available.includes(provider)) {
      tried.push({ provider, ok: false, error: `${provider} is not offered by onnxruntime-node on ${process.platform}-${process.arch}` });
      continue;
    }
    if (provider !== 'cpu') {
      const probe = await probeProvider(fileFor(provider), provider, feeds);
      if (!probe.ok) {
        tried.push({ provider, ok: false, error: probe.error });
        continue;
      }
    }
    try {
      const session = await InferenceSession.create(fileFor(provider), sessionOptions(provider, threads));
      tried.push({ provider, ok: true });
      return { session, status: { requested: pref, active: provider, available, tried, reason: reasonFor(pref, provider, tried, skipped) } };
    } catch (e) {
      tried.push({ provider, ok: false, error: firstLine(e) });
      if (provider === 'cpu') throw e;
    }
  }
  throw new Error(`No execution provider could load ${fileFor('cpu')}: ${tried.map((t) => `${t.provider}: ${t.error}`).join('; ')}`);
}

function reasonFor(pref: ProviderPreference, active: ExecutionProvider, tried: ProviderStatus['tried'], skipped: string): string {
  const failed = tried.filter((t) => !t.ok).map((t) => `${t.provider} failed (${t.error})`);
  if (failed.length > 0) return `${active} runs because ${failed.join('; ')}.`;
  if (pref === 'auto' && active === 'cpu') return `cpu runs: no GPU provider is available here${skipped ? ` (${skipped})` : ''}.`;
  if (pref === 'auto') return `${active} runs: the first GPU provider that passed its probe.`;
  return `${active} runs as requested.`;
}

/** Runs one session creation + one step on `provider` in a child Node process. */
export function probeProvider(modelPath: string, provider: ExecutionProvider, feeds: ProbeFeeds): Promise<{ ok: boolean; error?: string }> {
  const ortPath = require.resolve('onnxruntime-node');
  const script = `
    const ort = require(${JSON.stringify(ortPath)});
    const f = ${JSON.stringify(feeds)};
    (async () => {
      const s = await ort.InferenceSession.create(${JSON.stringify(modelPath)}, { executionProviders: [${JSON.stringify(provider)}] });
      const feed = { [f.numLogits]: new ort.Tensor('int64', BigInt64Array.from([1n]), [1]) };
      if (f.inputsEmbeds) feed[f.inputsEmbeds.name] = new ort.Tensor('float32', new Float32Array(f.inputsEmbeds.dModel), [1, 1, f.inputsEmbeds.dModel]);
      else feed[f.inputIds] = new ort.Tensor('int64', BigInt64Array.from([0n]), [1, 1]);
      const cap = f.pastLength ? 8 : 0;
      for (const n of f.pastNames) feed[n] = new ort.Tensor('float32', new Float32Array(f.nHead * cap * f.headDim), [1, f.nHead, cap, f.headDim]);
      if (f.pastLength) feed[f.pastLength] = new ort.Tensor('int64', BigInt64Array.from([0n]), [1]);
      await s.run(feed);
      process.stdout.write('PROBE_OK');
    })().catch((e) => { process.stderr.write(String(e && e.message || e)); process.exit(3); });`;
  return new Promise((resolve) => {
    execFile(process.execPath, ['-e', script], { timeout: PROBE_TIMEOUT_MS, maxBuffer: 1 << 20 }, (err, stdout, stderr) => {
      if (!err && stdout.includes('PROBE_OK')) return resolve({ ok: true });
      const why = cleanOrtMessage(stderr.trim().split('\n').filter(Boolean).pop() ?? '');
      if (err && (err as NodeJS.ErrnoException & { signal?: string }).signal) {
        return resolve({ ok: false, error: `probe process died (${(err as { signal?: string }).signal})${why ? `: ${why}` : ''}` });
      }
      resolve({ ok: false, error: why || (err ? err.message : 'probe gave no answer') });
    });
  });
}

/** True when the machine shows a GPU device node (Linux) or is not Linux (where we cannot tell cheaply). */
export function gpuDevicePresent(): boolean {
  if (process.platform !== 'linux') return true;
  if (existsSync('/dev/nvidia0')) return true;
  try {
    return readdirSync('/dev/dri').some((n) => n.startsWith('renderD'));
  } catch {
    return false;
  }
}

function providerLibraryInstalled(name: string): boolean {
  try {
    const dir = path.dirname(require.resolve('onnxruntime-node'));
    const bin = path.join(dir, '..', 'bin', 'napi-v6', process.platform, process.arch);
    return readdirSync(bin).some((f) => f.includes(`providers_${name}`));
  } catch {
    return false;
  }
}

function firstLine(e: unknown): string {
  return cleanOrtMessage(String((e as Error)?.message ?? e).split('\n')[0]);
}

/** ORT messages start with a source location and the failed check; the user needs the sentence after it. */
function cleanOrtMessage(msg: string): string {
  const m = /was false\.\s*(.+)$/.exec(msg);
  return (m ? m[1] : msg).trim();
}
