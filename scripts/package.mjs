// Packages one VSIX per platform target. The targets differ only in onnxruntime-node's
// native binaries, so each gets its own ignore file derived from .vscodeignore, with the
// binaries line narrowed to bin/napi-v6/<platform>/<arch> and the models lines to the
// default model(s). Prints each VSIX's size and checks what went in.
//
//   node scripts/package.mjs                         all targets whose binaries are installed
//   node scripts/package.mjs --target linux-x64      one target (repeatable)
//   node scripts/package.mjs --models my-model       ship these model folders (comma-separated)
//   node scripts/package.mjs --skip-build            package the dist/ that is already there
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const outDir = join(root, 'build', 'package');
const NAPI = 'napi-v6';
const ALL_TARGETS = ['linux-x64', 'linux-arm64', 'darwin-arm64', 'darwin-x64', 'win32-x64', 'win32-arm64'];

const args = process.argv.slice(2);
const option = (name) => {
  const values = [];
  args.forEach((a, i) => { if (a === name && args[i + 1]) values.push(args[i + 1]); });
  return values;
};
const binDir = (target) => {
  const [platform, arch] = target.split('-');
  return join('node_modules', 'onnxruntime-node', 'bin', NAPI, platform, arch);
};

const targets = option('--target').length > 0 ? option('--target') : ALL_TARGETS.filter((t) => existsSync(join(root, binDir(t))));
const models = option('--models').flatMap((m) => m.split(',')).filter(Boolean);
if (models.length === 0) models.push(...defaultModels());

for (const t of targets) {
  if (!ALL_TARGETS.includes(t)) fail(`unknown target ${t}; known: ${ALL_TARGETS.join(', ')}`);
  if (!existsSync(join(root, binDir(t)))) fail(`no onnxruntime-node binaries for ${t} in ${binDir(t)}`);
}
for (const m of models) {
  if (!existsSync(join(root, 'models', m, 'manifest.json'))) fail(`model folder models/${m} has no manifest.json`);
}

if (!args.includes('--skip-build')) {
  console.log('building (production)…');
  execFileSync(process.execPath, [join(root, 'scripts', 'build.mjs'), '--production'], { cwd: root, stdio: 'inherit' });
}
for (const f of ['extension.js', 'server.js', 'engineWorker.js', 'sessionWorker.js', 'webview.js']) {
  if (!existsSync(join(root, 'dist', f))) fail(`dist/${f} is missing: the build did not produce it`);
}

// vsce's secret scan reads every shipped file into one string, which fails above V8's 512 MB
// string limit (a 0.5B model's graph is 1.1 GB). The VSIX is an allow-list (.vscodeignore): only
// the bundles, icons, onnxruntime and the manifests' listed model files can be in it, so the scan
// is skipped when a model file is that large, and check() below still verifies the contents.
const largeModelFile = models.some((m) => modelFiles(m).some((f) => statSync(join(root, 'models', m, f)).size > 256 * 1024 * 1024));
const secretScanFlags = largeModelFile ? ['--allow-package-all-secrets', '--allow-package-env-file'] : [];

mkdirSync(outDir, { recursive: true });
const base = readFileSync(join(root, '.vscodeignore'), 'utf8');
const results = [];
for (const target of targets) {
  const ignoreFile = join(outDir, `vscodeignore.${target}`);
  writeFileSync(ignoreFile, ignoreFor(base, target, models));
  const out = join(outDir, `${pkg.name}-${target}-${pkg.version}.vsix`);
  console.log(`\npackaging ${target} with models [${models.join(', ')}]…`);
  execFileSync(process.execPath, [
    join(root, 'node_modules', '@vscode', 'vsce', 'vsce'), 'package',
    '--target', target,
    '--ignoreFile', ignoreFile,
    '--out', out,
    '--allow-missing-repository',
    // The README links to files in this repository; there is no public URL to rewrite them to.
    '--no-rewrite-relative-links',
    '--skip-license',
    ...secretScanFlags,
  ], { cwd: root, stdio: 'inherit', env: { ...process.env, npm_config_yes: 'true' } });
  const files = listZip(out);
  check(target, files, models);
  results.push({ target, out, bytes: statSync(out).size, files: files.length });
}

if (!args.includes('--skip-build')) {
  // Leave dist/ as the everyday build makes it (with source maps) for development and tests.
  execFileSync(process.execPath, [join(root, 'scripts', 'build.mjs')], { cwd: root, stdio: 'ignore' });
}

console.log('\nVSIX sizes:');
for (const r of results) console.log(`  ${r.target.padEnd(13)} ${(r.bytes / 1024 / 1024).toFixed(1).padStart(6)} MB  ${r.files} files  ${r.out.slice(root.length + 1)}`);

/** The base ignore file with the binaries and models lines replaced for one target. */
function ignoreFor(text, target, modelNames) {
  const lines = text.split('\n');
  const out = [];
  let modelsWritten = false;
  for (const line of lines) {
    if (line.startsWith('!node_modules/onnxruntime-node/bin/')) {
      out.push(`!${binDir(target).replace(/\\/g, '/')}/**`);
    } else if (line.startsWith('!models/')) {
      if (modelsWritten) continue;
      modelsWritten = true;
      for (const m of modelNames) for (const f of modelFiles(m)) out.push(`!models/${m}/${f}`);
    } else {
      out.push(line);
    }
  }
  return out.join('\n');
}

/** A model folder's files: the manifest, what its `files` section lists, and its card. */
function modelFiles(name) {
  const manifest = JSON.parse(readFileSync(join(root, 'models', name, 'manifest.json'), 'utf8'));
  const listed = Object.keys(manifest.files ?? {});
  const card = existsSync(join(root, 'models', name, 'README.md')) ? ['README.md'] : [];
  return [...new Set(['manifest.json', ...listed, ...card])];
}

/**
 * Model folders to ship: the default model the set-up builds (kind "upcycled", ~1.1 GB: its dense
 * source stays out, Compare Models uses it where the set-up built it), else the trained ones (not
 * the tiny test models), else tiny-test.
 */
function defaultModels() {
  const dir = join(root, 'models');
  const kind = (n) => JSON.parse(readFileSync(join(dir, n, 'manifest.json'), 'utf8')).architecture?.kind;
  const found = readdirSync(dir).filter((n) => existsSync(join(dir, n, 'manifest.json')) && !n.startsWith('tiny-test'));
  const upcycled = found.filter((n) => kind(n) === 'upcycled');
  if (upcycled.length > 0) return upcycled;
  return found.length > 0 ? found : ['tiny-test'];
}

function listZip(file) {
  const text = execFileSync('unzip', ['-Z1', file], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  return text.split('\n').filter(Boolean);
}

/** Fails when the VSIX lacks what the extension needs, or carries what it should not. */
function check(target, files, modelNames) {
  const has = (p) => files.includes(`extension/${p}`);
  const need = ['package.json', 'dist/extension.js', 'dist/server.js', 'dist/engineWorker.js', 'dist/sessionWorker.js', 'dist/webview.js', 'media/webview/inspector.css',
    'node_modules/onnxruntime-node/dist/index.js', 'node_modules/onnxruntime-common/dist/cjs/index.js',
    `${binDir(target).replace(/\\/g, '/')}/onnxruntime_binding.node`,
    ...modelNames.flatMap((m) => modelFiles(m).map((f) => `models/${m}/${f}`))];
  const missing = need.filter((p) => !has(p));
  if (missing.length > 0) fail(`${target}: the VSIX lacks ${missing.join(', ')}`);
  const foreign = files.filter((f) => /\/bin\/napi-v\d+\//.test(f) && !f.includes(`/${binDir(target).replace(/\\/g, '/')}/`));
  const sources = files.filter((f) => /\.(ts|map|py)$/.test(f) || /\/(toolchain|work|test|backend|\.venv)\//.test(f));
  if (foreign.length > 0) fail(`${target}: binaries of other platforms: ${foreign.slice(0, 3).join(', ')}`);
  if (sources.length > 0) fail(`${target}: sources or maps shipped: ${sources.slice(0, 5).join(', ')}`);
}

function fail(message) {
  console.error(`package: ${message}`);
  process.exit(1);
}
