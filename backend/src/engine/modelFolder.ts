// Reads and checks a model folder (models/FORMAT.md) before anything is loaded from it.
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, readdirSync, readFileSync, Stats, statSync } from 'node:fs';
import * as path from 'node:path';
import type { ModelKind } from '../../../common/protocol';
import { readJsonObject, userCacheDir, writeJsonAtomic } from './userCache';

import { manifestSchema, REFUSALS, SCHEMA_FORMAT_VERSION } from './manifestFields';

export const MANIFEST_FORMAT = 'versatileffn-onnx';
/** The format versions this build reads: the one models/manifest.schema.json describes. */
export const SUPPORTED_FORMAT_VERSIONS: readonly number[] = [SCHEMA_FORMAT_VERSION];

export type SpecialName = 'eot' | 'pad' | 'fim_prefix' | 'fim_suffix' | 'fim_middle' | 'file_sep';
export type SpecialIds = Record<SpecialName, number>;
export type FimOrder = 'psm' | 'spm';

/**
 * manifest.json as models/manifest.schema.json defines it (validateManifest checks every field
 * against the schema; manifestFields.ts says what the backend does with each).
 */
export interface Manifest {
  format: string;
  format_version: number;
  name: string;
  display_name: string;
  description?: string;
  architecture: {
    kind: ModelKind;
    n_layer: number;
    n_head: number;
    /** Key/value heads (grouped-query attention); absent: n_head. The KV cache has this many heads. */
    n_kv_head?: number;
    d_model: number;
    d_ff: number;
    vocab_size: number;
    /** Most loops of the depth path: route_loops is 1..max_loops, route_loop_probs has max_loops entries. */
    max_loops: number;
    /** For upcycled models the virtual experts are single FFN hidden units (n_experts equals d_ff; top_k is 0). */
    n_experts: number;
    top_k: number;
    qkv_bias?: boolean;
    tie_embeddings?: boolean;
    /** Upcycled: per layer, the gate threshold below which a hidden unit is skipped. */
    gate_thresholds?: number[];
    /** Upcycled: per layer, the |silu(gate)·up| threshold below which a kept unit skips its down projection. */
    down_thresholds?: number[];
    fixed_loops?: number | null;
    context_length: number;
    rope_theta?: number;
    norm_eps?: number;
    parameters?: number;
  };
  graph: {
    file: string;
    /** input_ids, or inputs_embeds where graph.embeddings is set (the schema requires one of them). */
    inputs: { input_ids?: string; inputs_embeds?: string; num_logits: string; past_key: string; past_value: string; past_length?: string };
    outputs: {
      logits: string; present_key: string; present_value: string;
      loops?: string; lambda?: string; experts?: string; weights?: string; loop_probs?: string;
      /** Upcycled: float32 [n_layer, T], share of the FFN's hidden units each token used in loop 1. */
      ffn_share?: string;
    };
    head_dim: number;
    weights_dtype: 'float32' | 'float16' | 'int8' | 'int4' | 'int4-ffn-in' | 'int4-ffn-in-deep' | 'int4-ffn-deep' | 'int4-mixed';
    /** Which variant graph.file is. */
    variant?: 'cpu-sparse' | 'masked';
    /** "gqa" (com.microsoft.GroupQueryAttention) or "plain" (standard ops). */
    attention?: 'gqa' | 'plain';
    /** "shared": fixed KV buffers of context_length positions, updated in place (inputs.past_length); absent: "concat". */
    kv?: 'concat' | 'shared';
    /** Graph files per provider family, e.g. a "masked" variant without control flow for GPU providers. */
    variants?: Record<string, { file: string; providers: string[] }>;
    /** ONNX external data files beside the graph (listed in files too). */
    external_data?: string[];
    /** The embedding table in a file of its own, read a row per token (embeddingRows.ts). */
    embeddings?: { file: string; layout: 'int8-block32' };
    /** A trimmed output head (logits keep the vocabulary's shape; left-out tokens get -1e9). */
    head?: { tokens: number; rule: string };
  };
  tokenizer: { file: string; config_file?: string; special_tokens?: Partial<Record<SpecialName, string>>; special_ids: SpecialIds };
  fim: { order: FimOrder };
  generation: { max_new_tokens?: number; temperature?: number; top_p?: number; stop_ids?: number[] };
  files: Record<string, { sha256: string; bytes: number }>;
  training?: Record<string, unknown>;
  metrics?: Record<string, number | null>;
  exported?: Record<string, unknown>;
  test_vectors?: {
    prompt_ids: number[]; greedy_ids: number[]; greedy_min_margin?: number; note?: string;
    routing_loops?: number[][]; routing_experts?: number[][][];
  };
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

/** Heads of the KV cache: n_kv_head (grouped-query attention), else n_head. */
export function kvHeads(manifest: Manifest): number {
  return manifest.architecture.n_kv_head ?? manifest.architecture.n_head;
}

/**
 * Checks a parsed manifest.json against models/manifest.schema.json (every field, and no field the
 * format does not declare), then the values the backend cannot honour (manifestFields.ts REFUSALS).
 * Throws ModelFolderError with a message naming the fields.
 */
export function validateManifest(raw: unknown, file: string): Manifest {
  const m = raw as Partial<Manifest> | null;
  const bad = (what: string): never => {
    throw new ModelFolderError(`manifest.json ${what}: ${file}. Re-export the model with models/toolchain/export.py.`, file);
  };
  if (typeof m !== 'object' || m === null || Array.isArray(m)) return bad('is not an object');
  if (m.format !== MANIFEST_FORMAT) return bad(`has format ${JSON.stringify(m.format)}, expected "${MANIFEST_FORMAT}"`);
  if (typeof m.format_version !== 'number' || !SUPPORTED_FORMAT_VERSIONS.includes(m.format_version)) {
    throw new ModelFolderError(
      `${file} has format_version ${JSON.stringify(m.format_version)}; this backend reads format_version ` +
        `${SUPPORTED_FORMAT_VERSIONS.join(', ')}. Update the extension or re-export the model for this version.`,
      file,
    );
  }
  const errors = manifestSchema.validate(m);
  if (errors.length > 0) {
    const shown = errors.slice(0, 4).map((e) => `${e.path || '(the manifest)'} ${e.message}`).join('; ');
    bad(`does not match the model folder format (models/manifest.schema.json): ${shown}${errors.length > 4 ? ` (and ${errors.length - 4} more)` : ''}`);
  }
  const manifest = m as Manifest;
  for (const r of REFUSALS) {
    const why = r.check(manifest);
    if (why) bad(why);
  }
  return manifest;
}

/** The graph file for a provider: the variant that lists it, else graph.file. */
export function graphFileFor(manifest: Manifest, provider: string): string {
  for (const v of Object.values(manifest.graph.variants ?? {})) {
    if (Array.isArray(v?.providers) && v.providers.includes(provider) && typeof v.file === 'string') return v.file;
  }
  return manifest.graph.file;
}

export interface VerifyOptions {
  /** Record of files already hashed (see VerifiedRecord); null: no record, hash every file. Default: verified.json in the user cache dir. */
  cacheFile?: string | null;
  /** Only files at least this large are recorded (default 64 MiB): hashing small files costs nothing. */
  cacheMinBytes?: number;
  /** A file is recorded only when its mtime and ctime were this much older than the hash (default 3 s). */
  recordMinAgeMs?: number;
}

/**
 * A file that was hashed and matched: a later load of the same file (same path, inode, size, mtime and
 * ctime) with the same expected sha256 skips hashing it again. ctime cannot be set from user space
 * (touch sets mtime only), and a file is recorded only when both times were at least
 * RECORD_MIN_AGE_MS older than the hash, so a rewrite within the file system's timestamp
 * granularity cannot pass as unchanged.
 */
interface VerifiedRecord {
  bytes: number;
  ino: number;
  mtimeMs: number;
  ctimeMs: number;
  sha256: string;
  checkedAt: string;
}

const RECORD_MIN_AGE_MS = 3_000;
const MAX_RECORDS = 64;

export function verifiedCacheFile(): string {
  return path.join(userCacheDir(), 'verified.json');
}

/** Checks every file listed in the manifest: present, the right size, then the right sha256. */
export async function verifyFiles(dir: string, manifest: Manifest, opts: VerifyOptions = {}): Promise<void> {
  const cacheFile = opts.cacheFile === undefined ? verifiedCacheFile() : opts.cacheFile;
  const minBytes = opts.cacheMinBytes ?? 64 * 2 ** 20;
  let records: Record<string, VerifiedRecord> | null = null;
  let dirty = false;
  for (const [name, expect] of Object.entries(manifest.files)) {
    const file = path.join(dir, name);
    if (!existsSync(file)) {
      throw new ModelFolderError(`${name} is missing from ${dir}. Copy the whole model folder again.`, file);
    }
    const st = statSync(file);
    const size = st.size;
    if (size !== expect.bytes) {
      const what = size < expect.bytes ? 'truncated' : 'the wrong size';
      throw new ModelFolderError(
        `${file} is ${what} (${size} bytes, manifest says ${expect.bytes}). Copy or download the model folder again.`,
        file,
      );
    }
    const want = String(expect.sha256).toLowerCase();
    const key = path.resolve(file);
    const useCache = cacheFile !== null && size >= minBytes;
    if (useCache) {
      records ??= readJsonObject<VerifiedRecord>(cacheFile);
      if (sameFile(records[key], st, want)) continue;
    }
    const hashedAt = Date.now();
    const sha = await sha256File(file);
    if (sha !== want) {
      throw new ModelFolderError(
        `${file} is corrupt (sha256 ${sha.slice(0, 12)}…, manifest says ${want.slice(0, 12)}…). Copy or download the model folder again.`,
        file,
      );
    }
    if (useCache && records) {
      const after = statSync(file);
      const settled = hashedAt - Math.max(st.mtimeMs, st.ctimeMs) >= (opts.recordMinAgeMs ?? RECORD_MIN_AGE_MS);
      if (settled && sameStat(after, st)) {
        delete records[key];
        records[key] = { bytes: size, ino: st.ino, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs, sha256: sha, checkedAt: new Date(hashedAt).toISOString() };
        dirty = true;
      }
    }
  }
  if (dirty && cacheFile && records) {
    const keys = Object.keys(records);
    for (const k of keys.slice(0, Math.max(0, keys.length - MAX_RECORDS))) delete records[k];
    try {
      writeJsonAtomic(cacheFile, records);
    } catch {
      // Not fatal: the next load hashes again.
    }
  }
}

function sameFile(r: VerifiedRecord | undefined, st: Stats, sha256: string): boolean {
  return !!r && r.sha256 === sha256 && r.bytes === st.size && r.ino === st.ino && r.mtimeMs === st.mtimeMs && r.ctimeMs === st.ctimeMs;
}

function sameStat(a: Stats, b: Stats): boolean {
  return a.size === b.size && a.ino === b.ino && a.mtimeMs === b.mtimeMs && a.ctimeMs === b.ctimeMs;
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
 * that carry test vectors); upcycled pretrained models, then VersatileFFN models, then baselines.
 */
export function defaultModelOrder(entries: readonly ModelFolderEntry[]): ModelFolderEntry[] {
  const kindRank: Record<string, number> = { upcycled: 0, versatile: 1 };
  const rank = (e: ModelFolderEntry) => (e.manifest?.test_vectors ? 10 : 0) + (kindRank[e.manifest?.architecture.kind ?? ''] ?? 2);
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
