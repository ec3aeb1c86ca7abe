// Reads and checks a model folder (models/FORMAT.md) before anything is loaded from it.
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import * as path from 'node:path';

export const MANIFEST_FORMAT = 'versatileffn-onnx';
export const SUPPORTED_FORMAT_VERSIONS: readonly number[] = [1];

export type SpecialName = 'eot' | 'pad' | 'fim_prefix' | 'fim_suffix' | 'fim_middle' | 'file_sep';
export type SpecialIds = Record<SpecialName, number>;

export interface Manifest {
  format: string;
  format_version: number;
  name: string;
  display_name: string;
  description?: string;
  architecture: {
    kind: 'versatile' | 'dense' | 'loop';
    n_layer: number;
    n_head: number;
    d_model: number;
    d_ff?: number;
    vocab_size: number;
    max_loops?: number;
    n_experts?: number;
    top_k?: number;
    fixed_loops?: number | null;
    context_length: number;
    rope_theta?: number;
    parameters?: number;
  };
  graph: {
    file: string;
    inputs: { input_ids: string; num_logits: string; past_key: string; past_value: string };
    outputs: {
      logits: string; present_key: string; present_value: string;
      loops?: string; lambda?: string; experts?: string; weights?: string; loop_probs?: string;
    };
    head_dim: number;
    weights_dtype?: string;
    /** "gqa" (com.microsoft.GroupQueryAttention) or "plain" (standard ops). */
    attention?: string;
    /** Graph files per provider family, e.g. a "masked" variant without control flow for GPU providers. */
    variants?: Record<string, { file: string; providers: string[] }>;
  };
  tokenizer: { file: string; config_file?: string; special_tokens?: Record<string, string>; special_ids: SpecialIds };
  fim?: { order: string };
  generation?: { max_new_tokens?: number; temperature?: number; top_p?: number; stop_ids?: number[] };
  files: Record<string, { sha256: string; bytes: number }>;
  metrics?: Record<string, number | null>;
  test_vectors?: { prompt_ids: number[]; greedy_ids: number[] };
}

/** A model folder that cannot be used; `file` names the culprit when there is one. */
export class ModelFolderError extends Error {
  constructor(message: string, readonly file?: string) {
    super(message);
    this.name = 'ModelFolderError';
  }
}

/** Reads manifest.json and checks the fields the backend relies on. Throws ModelFolderError. */
export function readManifest(dir: string): Manifest {
  const file = path.join(dir, 'manifest.json');
  if (!existsSync(dir) || !statSync(dir).isDirectory()) {
    throw new ModelFolderError(`Model folder ${dir} does not exist. Check the model directory setting.`, dir);
  }
  if (!existsSync(file)) {
    const empty = readdirSync(dir).length === 0;
    throw new ModelFolderError(
      `${empty ? 'Model folder is empty' : 'manifest.json is missing'}: ${file}. Re-export the model with models/toolchain/export.py.`,
      file,
    );
  }
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new ModelFolderError(`manifest.json is not valid JSON (${(e as Error).message}): ${file}. Re-export the model.`, file);
  }
  return validateManifest(raw, file);
}

export function validateManifest(raw: unknown, file: string): Manifest {
  const m = raw as Partial<Manifest> | null;
  const bad = (what: string): never => {
    throw new ModelFolderError(`manifest.json ${what}: ${file}. Re-export the model with models/toolchain/export.py.`, file);
  };
  if (typeof m !== 'object' || m === null) return bad('is not an object');
  if (m.format !== MANIFEST_FORMAT) return bad(`has format ${JSON.stringify(m.format)}, expected "${MANIFEST_FORMAT}"`);
  if (typeof m.format_version !== 'number' || !SUPPORTED_FORMAT_VERSIONS.includes(m.format_version)) {
    throw new ModelFolderError(
      `${file} has format_version ${JSON.stringify(m.format_version)}; this backend reads format_version ` +
        `${SUPPORTED_FORMAT_VERSIONS.join(', ')}. Update the extension or re-export the model for this version.`,
      file,
    );
  }
  if (typeof m.name !== 'string' || m.name === '') bad('has no "name"');
  const a = m.architecture;
  if (!a || !['versatile', 'dense', 'loop'].includes(a.kind)) bad('has no valid architecture.kind');
  for (const k of ['n_layer', 'n_head', 'vocab_size', 'context_length'] as const) {
    if (!Number.isInteger(a![k]) || a![k] <= 0) bad(`has no valid architecture.${k}`);
  }
  const g = m.graph;
  if (!g || typeof g.file !== 'string' || !g.inputs || !g.outputs || !Number.isInteger(g.head_dim)) bad('has no valid "graph"');
  const t = m.tokenizer;
  if (!t || typeof t.file !== 'string' || !t.special_ids) bad('has no valid "tokenizer"');
  for (const k of ['eot', 'fim_prefix', 'fim_suffix', 'fim_middle', 'file_sep'] as const) {
    if (!Number.isInteger(t!.special_ids[k])) bad(`has no tokenizer.special_ids.${k}`);
  }
  if (!m.files || typeof m.files !== 'object') bad('has no "files" checksums');
  for (const needed of [g!.file, t!.file]) {
    if (!m.files![needed]) bad(`does not list ${needed} under "files"`);
  }
  return m as Manifest;
}

/** The graph file for a provider: the variant that lists it, else graph.file. */
export function graphFileFor(manifest: Manifest, provider: string): string {
  for (const v of Object.values(manifest.graph.variants ?? {})) {
    if (Array.isArray(v?.providers) && v.providers.includes(provider) && typeof v.file === 'string') return v.file;
  }
  return manifest.graph.file;
}

/** Checks every file listed in the manifest: present, the right size, then the right sha256. */
export async function verifyFiles(dir: string, manifest: Manifest): Promise<void> {
  for (const [name, expect] of Object.entries(manifest.files)) {
    const file = path.join(dir, name);
    if (!existsSync(file)) {
      throw new ModelFolderError(`${name} is missing from ${dir}. Copy the whole model folder again.`, file);
    }
    const size = statSync(file).size;
    if (size !== expect.bytes) {
      const what = size < expect.bytes ? 'truncated' : 'the wrong size';
      throw new ModelFolderError(
        `${file} is ${what} (${size} bytes, manifest says ${expect.bytes}). Copy or download the model folder again.`,
        file,
      );
    }
    const sha = await sha256File(file);
    if (sha !== expect.sha256.toLowerCase()) {
      throw new ModelFolderError(
        `${file} is corrupt (sha256 ${sha.slice(0, 12)}…, manifest says ${expect.sha256.slice(0, 12)}…). Copy or download the model folder again.`,
        file,
      );
    }
  }
}

export function sha256File(file: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256');
    createReadStream(file)
      .on('data', (chunk) => hash.update(chunk))
      .on('error', reject)
      .on('end', () => resolve(hash.digest('hex')));
  });
}

/**
 * Folders to look for model folders in: the client's, then VFFN_MODEL_DIRS (path-delimited), then the
 * models/ folder next to the running script's folder or one above it (the repository in development,
 * the extension's bundled models when installed).
 */
export function resolveModelDirs(fromClient: unknown, scriptDir: string): string[] {
  const dirs: string[] = [];
  if (Array.isArray(fromClient)) dirs.push(...fromClient.filter((d): d is string => typeof d === 'string' && d !== ''));
  for (const d of (process.env.VFFN_MODEL_DIRS ?? '').split(path.delimiter)) if (d) dirs.push(d);
  for (const d of [path.resolve(scriptDir, '..', 'models'), path.resolve(scriptDir, '..', '..', 'models')]) {
    if (existsSync(path.join(d, 'FORMAT.md'))) dirs.push(d);
  }
  return [...new Set(dirs.map((d) => path.resolve(d)))];
}

export interface ModelFolderEntry {
  name: string;
  path: string;
  manifest?: Manifest;
  diskBytes: number;
  error?: string;
}

/** The model folders (subfolders with a manifest.json) in each model dir; later dirs do not shadow earlier ones. */
/**
 * Loadable folders in the order a default is picked: real models before test models (those
 * that carry test vectors), and VersatileFFN models before their baselines.
 */
export function defaultModelOrder(entries: readonly ModelFolderEntry[]): ModelFolderEntry[] {
  const rank = (e: ModelFolderEntry) =>
    (e.manifest?.test_vectors ? 2 : 0) + (e.manifest?.architecture.kind === 'versatile' ? 0 : 1);
  return entries.filter((e) => !e.error).sort((a, b) => rank(a) - rank(b));
}

export function listModelFolders(modelDirs: readonly string[]): ModelFolderEntry[] {
  const seen = new Set<string>();
  const out: ModelFolderEntry[] = [];
  for (const root of modelDirs) {
    let names: string[];
    try {
      names = readdirSync(root).sort();
    } catch {
      continue;
    }
    for (const name of names) {
      const dir = path.join(root, name);
      if (seen.has(name) || !isDir(dir) || !existsSync(path.join(dir, 'manifest.json'))) continue;
      seen.add(name);
      out.push(describeFolder(name, dir));
    }
  }
  return out;
}

function describeFolder(name: string, dir: string): ModelFolderEntry {
  let diskBytes = 0;
  for (const f of readdirSync(dir)) {
    try {
      diskBytes += statSync(path.join(dir, f)).size;
    } catch {
      // A file vanishing while we list is not an error worth reporting here.
    }
  }
  try {
    return { name, path: dir, manifest: readManifest(dir), diskBytes };
  } catch (e) {
    return { name, path: dir, diskBytes, error: (e as Error).message };
  }
}

function isDir(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}
