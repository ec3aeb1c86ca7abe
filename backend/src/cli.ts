// `vffn`: the backend without VS Code.
//   vffn complete FILE --line N --col M [--model DIR] [--max-tokens N] [--max-time-ms N]   one completion (line/col 1-based)
//   vffn complete --jsonl [--model DIR]       JSON lines {prefix, suffix, language, maxTokens, maxTimeMs} in, one result line out each
//   vffn bench [--model DIR]... [--out FILE] [--samples N]   the benchmark; report under bench/results/
//   vffn bench-drafts [--model DIR] [--samples N] [--ab NAME=VALUE] [--out FILE]   completions as shipped vs one drafting setting changed
//   vffn bench-lines [--model DIR] [--lines N] [--window N] [--out FILE]   new lines deep in a long file: the prompt's cut anchored or not
//   vffn bench-places [--model DIR] [--samples N] [--out FILE]   the first completion at a place moved to: prefill on rest, KV slots
//   vffn bench-typing [--model DIR] [--samples N] [--ab NAME=VALUE] [--out FILE]   real lines typed keystroke by keystroke, the editor's cache first; as shipped vs one setting changed
//   vffn soak [--model DIR] [--requests N]    many completions; RSS along the way (leak check)
//   vffn models                               the model folders the backend sees
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import * as readline from 'node:readline';
import type { CompleteResult } from '../../common/protocol';
import { runBench, runSoak } from './tools/bench';
import { runDraftBench } from './tools/draftBench';
import { runLinesBench } from './tools/linesBench';
import { runPlacesBench } from './tools/placesBench';
import { runTypingBench } from './tools/typingBench';
import { Engine } from './engine/engine';
import { listModelFolders, resolveModelDirs } from './engine/modelFolder';

const USAGE = `usage:
  vffn complete FILE --line N --col M [--model DIR] [--max-tokens N] [--max-time-ms N]
  vffn complete --jsonl [--model DIR]
  vffn bench [--model DIR]... [--out FILE] [--samples N]
  vffn bench-drafts [--model DIR] [--samples N] [--ab NAME=VALUE] [--out FILE]
  vffn bench-lines [--model DIR] [--lines N] [--window N] [--out FILE]
  vffn bench-places [--model DIR] [--samples N] [--out FILE]
  vffn bench-typing [--model DIR] [--samples N] [--ab NAME=VALUE] [--out FILE]
  vffn soak [--model DIR] [--requests N]
  vffn models`;

interface Args {
  positional: string[];
  flags: Map<string, string[]>;
}

function parseArgs(argv: string[]): Args {
  const positional: string[] = [];
  const flags = new Map<string, string[]>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) {
      positional.push(a);
      continue;
    }
    const [name, inline] = a.slice(2).split('=', 2);
    const value = inline ?? (argv[i + 1] !== undefined && !argv[i + 1].startsWith('--') ? argv[++i] : 'true');
    flags.set(name, [...(flags.get(name) ?? []), value]);
  }
  return { positional, flags };
}

function flag(args: Args, name: string): string | undefined {
  return args.flags.get(name)?.at(-1);
}

function fail(msg: string): never {
  process.stderr.write(`vffn: ${msg}\n`);
  process.exit(2);
}

/** Model dirs: VFFN_MODEL_DIRS, then the repository's (or the extension's) models/ folder. */
export function defaultModelDirs(): string[] {
  return resolveModelDirs([], __dirname);
}

/** An engine on the model folder `dir` (or the default model), with its load checked. */
export async function engineFor(dir: string | undefined, log = false): Promise<Engine> {
  const modelDirs = dir ? [path.dirname(path.resolve(dir))] : defaultModelDirs();
  const engine = new Engine({
    modelDirs, provider: 'auto', threads: 0,
    log: log ? (m) => process.stderr.write(`${m}\n`) : undefined,
  });
  const r = await engine.start(dir ? path.basename(path.resolve(dir)) : (process.env.VFFN_DEFAULT_MODEL ?? null));
  if (!r.ok || (dir && r.active !== path.basename(path.resolve(dir)))) {
    await engine.dispose();
    fail(r.error ?? 'no model loaded');
  }
  return engine;
}

async function completeFile(args: Args): Promise<void> {
  const file = args.positional[1];
  if (!file) fail(USAGE);
  const line = Number(flag(args, 'line'));
  const col = Number(flag(args, 'col'));
  if (!Number.isInteger(line) || !Number.isInteger(col) || line < 1 || col < 1) fail('--line and --col must be positive integers (1-based)');
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    fail(`cannot read ${file}: ${(e as Error).message}`);
  }
  const lines = text.split('\n');
  if (line > lines.length) fail(`${file} has ${lines.length} lines; --line ${line} is outside it`);
  if (col > lines[line - 1].length + 1) fail(`line ${line} of ${file} has ${lines[line - 1].length} characters; --col ${col} is outside it`);
  const offset = lines.slice(0, line - 1).reduce((n, l) => n + l.length + 1, 0) + col - 1;
  const engine = await engineFor(flag(args, 'model'));
  const maxTokens = flag(args, 'max-tokens') ? Number(flag(args, 'max-tokens')) : undefined;
  // The time limit counts from the request's arrival, a cold prefill included (seconds for a long prompt on a big model).
  const maxTimeMs = flag(args, 'max-time-ms') ? Number(flag(args, 'max-time-ms')) : undefined;
  const r = await engine.complete({
    requestId: 'cli', languageId: path.extname(file).slice(1), prefix: text.slice(0, offset), suffix: text.slice(offset), maxTokens, maxTimeMs,
  });
  process.stdout.write(`${r.completion}\n`);
  process.stdout.write(`${JSON.stringify(compact(r))}\n`);
  await engine.dispose();
  if (r.error) process.exitCode = 1;
}

async function completeJsonl(args: Args): Promise<void> {
  const engine = await engineFor(flag(args, 'model'));
  const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
  let n = 0;
  for await (const line of rl) {
    if (line.trim() === '') continue;
    n++;
    let req: { prefix?: unknown; suffix?: unknown; language?: unknown; maxTokens?: unknown; maxTimeMs?: unknown };
    try {
      req = JSON.parse(line);
    } catch (e) {
      process.stdout.write(`${JSON.stringify({ completion: '', error: `line ${n} is not JSON: ${(e as Error).message}` })}\n`);
      continue;
    }
    const r = await engine.complete({
      requestId: String(n),
      languageId: typeof req.language === 'string' ? req.language : '',
      prefix: req.prefix as string,
      suffix: (req.suffix ?? '') as string,
      maxTokens: typeof req.maxTokens === 'number' ? req.maxTokens : undefined,
      maxTimeMs: typeof req.maxTimeMs === 'number' ? req.maxTimeMs : undefined,
    });
    process.stdout.write(`${JSON.stringify(compact(r))}\n`);
  }
  await engine.dispose();
}

/** The JSON line for one result: the completion, per-token data with each layer's loop count, timings. */
export function compact(r: CompleteResult) {
  return {
    completion: r.completion,
    stopReason: r.stopReason,
    tokens: r.tokens.map((t) => ({ id: t.id, text: t.text, prob: round(t.prob), entropy: round(t.entropy), loops: t.routing.loops, computeVsDense: round(t.computeVsDense) })),
    trimmed: r.trimmed,
    timings: r.timings,
    compute: r.compute,
    model: r.model,
    provider: r.provider,
    ...(r.error ? { error: r.error } : {}),
  };
}

function round(x: number): number {
  return Math.round(x * 1e4) / 1e4;
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const cmd = args.positional[0];
  if (cmd === 'complete' && flag(args, 'jsonl') !== undefined) return completeJsonl(args);
  if (cmd === 'complete') return completeFile(args);
  if (cmd === 'bench') {
    const out = await runBench({
      models: args.flags.get('model') ?? [],
      out: flag(args, 'out'),
      samples: flag(args, 'samples') ? Number(flag(args, 'samples')) : undefined,
      engineFor: (dir) => engineFor(dir),
    });
    process.stdout.write(out.markdown);
    return;
  }
  // The benches that run one model in process: each writes its report and returns its markdown.
  const num = (name: string) => (flag(args, name) ? Number(flag(args, name)) : undefined);
  const engineBenches: Record<string, (e: Engine) => Promise<{ markdown: string }>> = {
    'bench-drafts': (e) => runDraftBench(e, { samples: num('samples'), out: flag(args, 'out'), ab: flag(args, 'ab') }),
    'bench-lines': (e) => runLinesBench(e, { lines: num('lines'), window: num('window'), out: flag(args, 'out') }),
    'bench-places': (e) => runPlacesBench(e, { samples: num('samples'), out: flag(args, 'out') }),
    'bench-typing': (e) => runTypingBench(e, { samples: num('samples'), out: flag(args, 'out'), ab: flag(args, 'ab') }),
  };
  if (cmd in engineBenches) {
    const engine = await engineFor(flag(args, 'model'));
    process.stdout.write((await engineBenches[cmd](engine)).markdown);
    await engine.dispose();
    return;
  }
  if (cmd === 'soak') {
    const engine = await engineFor(flag(args, 'model'));
    const n = Number(flag(args, 'requests') ?? 2000);
    const r = await runSoak(engine, n, (line) => process.stdout.write(`${line}\n`));
    const mb = r.rssBytes.map((b) => (b / 2 ** 20).toFixed(1));
    process.stdout.write(`RSS first/last sample: ${mb[0]} MB -> ${mb[mb.length - 1]} MB; unexpected errors: ${r.errors}\n`);
    await engine.dispose();
    return;
  }
  if (cmd === 'models') {
    for (const e of listModelFolders(defaultModelDirs())) {
      process.stdout.write(`${e.name}\t${e.path}\t${e.error ?? e.manifest?.display_name ?? ''}\n`);
    }
    return;
  }
  fail(USAGE);
}

main().catch((e) => fail((e as Error).stack ?? String(e)));
