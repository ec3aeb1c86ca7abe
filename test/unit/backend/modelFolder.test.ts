import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import {
  defaultModelOrder, graphFileFor, kvHeads, listModelFolders, ModelFolderEntry, readManifest, resolveModelDirs, validateManifest, verifyFiles,
} from '../../../backend/src/engine/modelFolder';
import { copyModel, MODELS, tempDir, TINY } from './helpers';

test('the checked-in tiny model passes every check', async () => {
  const m = readManifest(TINY);
  assert.equal(m.format_version, 1);
  await verifyFiles(TINY, m);
});

test('empty folder, missing folder, bad JSON', () => {
  const d = tempDir();
  assert.throws(() => readManifest(d), /Model folder is empty/);
  assert.throws(() => readManifest(path.join(d, 'nope')), /does not exist/);
  writeFileSync(path.join(d, 'manifest.json'), '{nope');
  assert.throws(() => readManifest(d), /not valid JSON.*manifest\.json/);
  rmSync(d, { recursive: true });
});

test('wrong format version names the versions this build reads', () => {
  const c = copyModel(TINY);
  const file = path.join(c.dir, 'manifest.json');
  const m = JSON.parse(readFileSync(file, 'utf8'));
  writeFileSync(file, JSON.stringify({ ...m, format_version: 99 }));
  assert.throws(() => readManifest(c.dir), /format_version 99; this backend reads format_version 1/);
  writeFileSync(file, JSON.stringify({ ...m, format: 'other' }));
  assert.throws(() => readManifest(c.dir), /format "other"/);
  c.cleanup();
});

test('missing, truncated and corrupt files are named', async () => {
  const c = copyModel(TINY);
  const m = readManifest(c.dir);
  const onnx = path.join(c.dir, 'model.onnx');
  const tok = path.join(c.dir, 'tokenizer.json');
  const original = readFileSync(tok);
  truncateSync(onnx, 1000);
  await assert.rejects(verifyFiles(c.dir, m), (e: Error) => /model\.onnx is truncated \(1000 bytes/.test(e.message));
  rmSync(onnx);
  await assert.rejects(verifyFiles(c.dir, m), /model\.onnx is missing/);
  c.cleanup();
  const c2 = copyModel(TINY);
  const bytes = Buffer.from(original);
  bytes[10] ^= 0xff;
  writeFileSync(path.join(c2.dir, 'tokenizer.json'), bytes);
  await assert.rejects(verifyFiles(c2.dir, readManifest(c2.dir)), /tokenizer\.json is corrupt \(sha256/);
  c2.cleanup();
});

test('listModelFolders finds folders with a manifest and reports broken ones', () => {
  const c = copyModel(TINY);
  mkdirSync(path.join(c.modelsDir, 'no-manifest'));
  mkdirSync(path.join(c.modelsDir, 'broken'));
  writeFileSync(path.join(c.modelsDir, 'broken', 'manifest.json'), '{}');
  const list = listModelFolders([c.modelsDir, path.join(c.modelsDir, 'missing-dir')]);
  assert.deepEqual(list.map((e) => e.name), ['broken', 'tiny-test']);
  assert.match(list[0].error ?? '', /format/);
  assert.equal(list[1].error, undefined);
  assert.ok(list[1].diskBytes > 1000);
  c.cleanup();
});

test('model dirs: the client\'s, then VFFN_MODEL_DIRS, then the repository\'s models/, without duplicates', () => {
  const saved = process.env.VFFN_MODEL_DIRS;
  process.env.VFFN_MODEL_DIRS = ['/tmp/a', '', '/tmp/b'].join(path.delimiter);
  try {
    const dirs = resolveModelDirs(['/x', 3, '', '/tmp/a'], path.join(MODELS, '..', 'backend', 'src'));
    assert.deepEqual(dirs, ['/x', '/tmp/a', '/tmp/b', MODELS]);
  } finally {
    if (saved === undefined) delete process.env.VFFN_MODEL_DIRS;
    else process.env.VFFN_MODEL_DIRS = saved;
  }
});

test('graph file per provider: the variant that lists the provider, else graph.file', () => {
  const m = readManifest(TINY);
  const withVariants = { ...m, graph: { ...m.graph, variants: {
    'cpu-sparse': { file: 'model.onnx', providers: ['cpu'] },
    masked: { file: 'model.masked.onnx', providers: ['webgpu', 'cuda'] },
  } } };
  assert.equal(graphFileFor(withVariants, 'cpu'), 'model.onnx');
  assert.equal(graphFileFor(withVariants, 'webgpu'), 'model.masked.onnx');
  assert.equal(graphFileFor(withVariants, 'dml'), m.graph.file);
  assert.equal(graphFileFor({ ...m, graph: { ...m.graph, variants: undefined } }, 'cuda'), m.graph.file);
});

test('upcycled models: kind "upcycled", n_kv_head (must divide n_head), the extra fields are accepted', () => {
  const m = readManifest(TINY);
  const up = {
    ...m,
    architecture: { ...m.architecture, kind: 'upcycled', n_kv_head: 1, qkv_bias: true, tie_embeddings: false, gate_thresholds: [0.1, 0.2], n_experts: 256, top_k: 0 },
    graph: { ...m.graph, outputs: { ...m.graph.outputs, ffn_share: 'route_ffn_share' } },
  };
  const v = validateManifest(up, 'manifest.json');
  assert.equal(v.architecture.kind, 'upcycled');
  assert.equal(kvHeads(v), 1);
  assert.equal(kvHeads(m), m.architecture.n_head);
  assert.throws(() => validateManifest({ ...up, architecture: { ...up.architecture, n_kv_head: 3 } }, 'manifest.json'), /n_kv_head/);
  assert.throws(() => validateManifest({ ...up, architecture: { ...up.architecture, kind: 'moe' } }, 'manifest.json'), /architecture\.kind/);
});

test('default model order: real before test models; upcycled, then versatile, then baselines', () => {
  const entry = (name: string, kind: string, test = false) =>
    ({ name, path: name, diskBytes: 0, manifest: { architecture: { kind }, ...(test ? { test_vectors: {} } : {}) } }) as unknown as ModelFolderEntry;
  const order = defaultModelOrder([
    entry('dense', 'dense'), entry('tiny', 'versatile', true), entry('vffn', 'versatile'), entry('qwen', 'upcycled'),
    { name: 'broken', path: 'broken', diskBytes: 0, error: 'x' },
  ]);
  assert.deepEqual(order.map((e) => e.name), ['qwen', 'vffn', 'dense', 'tiny']);
});

test('verified-file record: an unchanged big file is not hashed again; a changed one is', async () => {
  const c = copyModel(TINY);
  const cacheFile = path.join(c.modelsDir, 'verified.json');
  try {
    const m = readManifest(c.dir);
    const onnx = path.join(c.dir, 'model.onnx');
    const key = path.resolve(onnx);
    const big = { cacheFile, cacheMinBytes: statSync(onnx).size };
    // Just written: not recorded (a rewrite within the timestamp granularity could pass as unchanged).
    await verifyFiles(c.dir, m, big);
    assert.equal(existsSync(cacheFile), false);
    const opts = { ...big, recordMinAgeMs: 0 };
    await verifyFiles(c.dir, m, opts);
    const records = JSON.parse(readFileSync(cacheFile, 'utf8'));
    assert.deepEqual(Object.keys(records), [key], 'only files of at least cacheMinBytes are recorded');
    assert.equal(records[key].sha256, m.files['model.onnx'].sha256);
    // The record is trusted without hashing: a manifest and a record that agree on a made-up sha pass.
    const fake = 'f'.repeat(64);
    writeFileSync(cacheFile, JSON.stringify({ [key]: { ...records[key], sha256: fake } }));
    const faked = { ...m, files: { ...m.files, 'model.onnx': { ...m.files['model.onnx'], sha256: fake } } };
    await verifyFiles(c.dir, faked, opts);
    // ...but not for the real manifest (another expected sha): that one hashes and passes.
    await verifyFiles(c.dir, m, opts);
    // Same size, changed bytes: mtime and ctime move, the record no longer matches, the hash catches it.
    const bytes = readFileSync(onnx);
    bytes[bytes.length - 5] ^= 0xff;
    writeFileSync(onnx, bytes);
    await assert.rejects(verifyFiles(c.dir, m, opts), /model\.onnx is corrupt/);
  } finally {
    c.cleanup();
  }
});
