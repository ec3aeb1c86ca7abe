// `npm run bench:peer [-- --threads N --samples N --decode-tokens N --prefill-runs N --model DIR --gguf FILE --out FILE]`
//
// Our backend side by side with llama.cpp on this machine, on the same prompts and thread count
// (issue 10, item 5). Ours: the default model (models/qwen2.5-coder-0.5b-vffn) through Engine.complete,
// on the CPU. llama.cpp: the dense source GGUF the default model was built from (the set-up's checksummed
// copy in ~/.cache/versatileffn/sources, found by models/toolchain/upcycle/source.py) through the npm
// package node-llama-cpp@3.22.1. That package is never a product dependency: the first run installs it
// with its prebuilt binaries into ${VFFN_CACHE:-~/.cache/versatileffn}/peer/node-llama-cpp-3.22.1/
// (~700 MB, outside the checkout; later runs reuse it), and the run fails with a message if the npm
// registry cannot be reached. Each engine runs alone in its own child process (its peak RSS is its own),
// ours first: it writes the exact prompt ids of every request and how many tokens it picked, and the
// llama.cpp child replays them. Measured on both sides: cold prefill of exactly 250 and 1,000 prompt
// tokens (KV cache cleared; each of the --prefill-runs runs cuts its prompts from another file),
// decoding after them, single-line completions cold and warm (one more
// character typed, KV cache reused), time to first token, RSS after load and peak RSS. The report
// (JSON + Markdown, bench/results/peer-<date>.{json,md}) puts ours, llama.cpp and ours/llama.cpp side
// by side and marks issue 10's goals met or missed. Takes ~5 minutes with the default 20 samples on a
// 2-core machine; nothing else should run meanwhile.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { defaultReportPath, machineName, writeReports } from './bench';
import { type Plan, PREFILL_RUNS, PREFILL_SIZES, SUFFIX_TOKENS } from './peerPrompts';
import { compareSides, goalCounts, PeerReport, SideResult, toMarkdown } from './peerReport';

export const PEER_PACKAGE = 'node-llama-cpp';
export const PEER_VERSION = '3.22.1';

/** A failure the user can act on: printed as one message, no stack. */
class PeerError extends Error {}

interface Args {
  threads: number;
  samples: number;
  decodeTokens: number;
  prefillRuns: number;
  model: string;
  gguf?: string;
  out?: string;
}

const USAGE = `usage: npm run bench:peer -- [--threads N (2)] [--samples N (20)] [--decode-tokens N (16)] [--prefill-runs N (${PREFILL_RUNS})] `
  + '[--model DIR (models/qwen2.5-coder-0.5b-vffn)] [--gguf FILE (the source GGUF)] [--out FILE.json]';

export function parseArgs(argv: readonly string[]): Args {
  const a: Args = { threads: 2, samples: 20, decodeTokens: 16, prefillRuns: PREFILL_RUNS, model: 'models/qwen2.5-coder-0.5b-vffn' };
  for (let i = 0; i < argv.length; i++) {
    const name = argv[i].replace(/^--/, '');
    const value = argv[++i];
    if (value === undefined) throw new PeerError(`--${name} needs a value\n${USAGE}`);
    const int = () => {
      const n = Number(value);
      if (!Number.isInteger(n) || n < 1) throw new PeerError(`--${name} must be a positive integer, not ${value}`);
      return n;
    };
    if (name === 'threads') a.threads = int();
    else if (name === 'samples') a.samples = int();
    else if (name === 'decode-tokens') a.decodeTokens = int();
    else if (name === 'prefill-runs') a.prefillRuns = int();
    else if (name === 'model') a.model = value;
    else if (name === 'gguf') a.gguf = value;
    else if (name === 'out') a.out = value;
    else throw new PeerError(`unknown option ${argv[i - 1]}\n${USAGE}`);
  }
  return a;
}

function repoRoot(): string {
  return path.resolve(__dirname, '..', '..', '..');
}

function log(msg: string): void {
  process.stderr.write(`bench:peer: ${msg}\n`);
}

export function peerDir(env: NodeJS.ProcessEnv = process.env): string {
  const cache = env.VFFN_CACHE || path.join(os.homedir(), '.cache', 'versatileffn');
  return path.join(cache, 'peer', `${PEER_PACKAGE}-${PEER_VERSION}`);
}

/** node-llama-cpp in its own folder outside the checkout: reused if there, else installed into a temporary folder and renamed. */
function ensurePeer(): string {
  const dir = peerDir();
  const pkg = (d: string) => path.join(d, 'node_modules', PEER_PACKAGE, 'package.json');
  try {
    if (JSON.parse(readFileSync(pkg(dir), 'utf8')).version === PEER_VERSION) return dir;
  } catch {
    // not installed yet
  }
  log(`installing ${PEER_PACKAGE}@${PEER_VERSION} into ${dir} (once; its prebuilt llama.cpp binaries, ~700 MB)`);
  const tmp = `${dir}.partial-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  const r = spawnSync('npm', ['install', '--prefix', tmp, '--no-audit', '--no-fund', '--save-exact', '--fetch-retries=1', '--loglevel=error', `${PEER_PACKAGE}@${PEER_VERSION}`], {
    // SKIP_DOWNLOAD: use the prebuilt binaries the package ships; never download or build llama.cpp.
    env: { ...process.env, NODE_LLAMA_CPP_SKIP_DOWNLOAD: 'true', npm_config_yes: 'true' },
    encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 20 * 60_000,
  });
  if (r.status !== 0 || !existsSync(pkg(tmp))) {
    rmSync(tmp, { recursive: true, force: true });
    const why = r.error ? r.error.message : `npm exited with ${r.status}`;
    // npm's own error lines name the cause (ECONNREFUSED, ENOTFOUND, E404…); else its last lines.
    const said = `${r.stderr ?? ''}`.trim().split('\n');
    const cause = said.filter((l) => /npm error (code|errno|request to|network)|E[A-Z]{3,}/.test(l)).slice(0, 4);
    const tail = (cause.length ? cause : said.slice(-6)).join('\n');
    throw new PeerError(`cannot install ${PEER_PACKAGE}@${PEER_VERSION} (${why}). The llama.cpp side needs it from the npm registry once `
      + `(registry: ${npmRegistry()}); are we offline? Nothing was measured.${tail ? `\nnpm said:\n${tail}` : ''}`);
  }
  rmSync(dir, { recursive: true, force: true });
  renameSync(tmp, dir);
  return dir;
}

function npmRegistry(): string {
  const r = spawnSync('npm', ['config', 'get', 'registry'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : 'unknown';
}

/** The checksummed source GGUF in the cache (models/toolchain/upcycle/source.py prints its path; it fetches it if missing). */
function sourceGguf(root: string): string {
  const venv = path.join(root, '.venv', 'bin', 'python');
  const python = existsSync(venv) ? venv : 'python3';
  const r = spawnSync(python, [path.join(root, 'models', 'toolchain', 'upcycle', 'source.py')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  const file = `${r.stdout ?? ''}`.trim().split('\n').pop() ?? '';
  if (r.status !== 0 || !file || !existsSync(file)) {
    throw new PeerError(`the source GGUF is not in the cache and could not be fetched (models/toolchain/upcycle/source.py: ${r.error?.message ?? `exit ${r.status}`}); run npm run setup, or pass --gguf FILE`);
  }
  return file;
}

/**
 * Our child is bundled like dist/cli.js (esbuild, CommonJS, onnxruntime-node external) rather than run
 * under tsx: tsx's loader thread alone adds ~55 MB to a process's peak RSS, which would count against us.
 */
async function bundleOurs(root: string): Promise<string> {
  const esbuild = await import('esbuild');
  const out = path.join(root, 'dist', 'peer-ours.js');
  await esbuild.build({
    absWorkingDir: root, entryPoints: ['backend/src/tools/peerOurs.ts'], outfile: out, bundle: true,
    platform: 'node', format: 'cjs', target: 'node20', external: ['vscode', 'onnxruntime-node'], logLevel: 'warning',
    define: { 'import.meta.url': 'importMetaUrl' }, inject: [path.join(root, 'scripts', 'import-meta-url.js')],
  });
  return out;
}

function runChild(what: string, args: string[]): void {
  log(`${what}…`);
  const r = spawnSync(process.execPath, args, { stdio: ['ignore', 'inherit', 'inherit'], timeout: 60 * 60_000 });
  if (r.status !== 0) throw new PeerError(`${what} failed (${r.error?.message ?? (r.signal ? `signal ${r.signal}` : `exit ${r.status}`)}); see the messages above`);
}

/** Share of all CPUs' time spent busy over the next `ms` (Linux /proc/stat); null elsewhere. */
async function cpuBusyPercent(ms: number): Promise<number | null> {
  const sample = () => {
    try {
      const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
      return { idle: f[3] + (f[4] ?? 0), total: f.reduce((a, b) => a + b, 0) };
    } catch {
      return null;
    }
  };
  const a = sample();
  await new Promise((r) => setTimeout(r, ms));
  const b = sample();
  if (!a || !b || b.total <= a.total) return null;
  return Math.round(100 * (1 - (b.idle - a.idle) / (b.total - a.total)));
}

function gitHead(root: string): string {
  const r = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : 'unknown';
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const a = parseArgs(argv);
  const root = repoRoot();
  const date = new Date().toISOString();
  // The machine is shared: a high load average means other work competed for the cores.
  const loadAverageAtStart = os.loadavg().map((x) => Math.round(x * 100) / 100);
  // The load average lags (it still counts work that just ended): the CPU time used in the last 2 s says what runs now.
  const cpuBusyAtStart = await cpuBusyPercent(2000);
  if (cpuBusyAtStart !== null && cpuBusyAtStart > 25) log(`the CPUs were ${cpuBusyAtStart}% busy before the start: other work is running, the numbers will be noisy`);
  const model = path.resolve(root, a.model);
  if (!existsSync(path.join(model, 'manifest.json'))) throw new PeerError(`${a.model} has no manifest.json: build the default model with npm run setup, or pass --model DIR`);
  const lib = ensurePeer();
  const gguf = a.gguf ? path.resolve(a.gguf) : sourceGguf(root);
  if (!existsSync(gguf)) throw new PeerError(`${gguf} does not exist`);
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'vffn-peer-'));
  try {
    const plan = path.join(tmp, 'plan.json');
    const oursOut = path.join(tmp, 'ours.json');
    const peerOut = path.join(tmp, 'llama.json');
    const oursJs = await bundleOurs(root);
    const common = ['--threads', String(a.threads)];
    runChild(`ours: ${path.relative(root, model)} through Engine.complete`, [oursJs, ...common, '--model', model, '--samples', String(a.samples),
      '--decode-tokens', String(a.decodeTokens), '--prefill-runs', String(a.prefillRuns), '--plan', plan, '--out', oursOut]);
    runChild(`llama.cpp: ${path.basename(gguf)} through ${PEER_PACKAGE} ${PEER_VERSION}`, [path.join(root, 'bench', 'peer', 'llama.mjs'), ...common,
      '--lib', lib, '--gguf', gguf, '--plan', plan, '--out', peerOut]);
    const ours = JSON.parse(readFileSync(oursOut, 'utf8')) as SideResult;
    const peer = JSON.parse(readFileSync(peerOut, 'utf8')) as SideResult;
    const planJson = JSON.parse(readFileSync(plan, 'utf8')) as Plan;
    const rows = compareSides(ours, peer, PREFILL_SIZES);
    const report: PeerReport = {
      date,
      machine: machineName(),
      loadAverageAtStart,
      cpuBusyAtStart,
      command: `npm run bench:peer${argv.length ? ` -- ${argv.join(' ')}` : ''}`,
      settings: { threads: a.threads, samples: a.samples, decodeTokens: a.decodeTokens, prefillRuns: a.prefillRuns, suffixTokens: SUFFIX_TOKENS, gguf },
      prompts: {
        prefill: planJson.prefill.map((p) => ({ promptTokens: p.promptTokens, sources: p.sources })),
        completions: ours.completions.length,
        sampleFiles: [...new Set(ours.completions.map((c) => c.file))],
      },
      versions: { node: process.version, git: gitHead(root), ...ours.versions, ...peer.versions },
      ours, peer, rows, goals: goalCounts(rows),
    };
    const markdown = toMarkdown(report);
    const out = writeReports(a.out ? path.resolve(a.out) : defaultReportPath(root, 'peer', date), report, markdown);
    process.stdout.write(`${markdown}\nreport: ${path.relative(process.cwd(), out)} (+ .md)\n`);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

if (require.main === module) {
  main().catch((e) => {
    process.stderr.write(e instanceof PeerError ? `bench:peer: ${e.message}\n` : `bench:peer: ${(e as Error).stack ?? e}\n`);
    process.exit(1);
  });
}
