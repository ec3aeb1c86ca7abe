// One esbuild build for everything: what ships (the extension, the backend: server, engine worker
// and CLI, the inspector webview) and the backend tools that run as bundles elsewhere (dist/gpuBench.js
// for the GPU machine, which has no tsx; .vscodeignore keeps it out of the VSIX). Entries whose source
// does not exist yet are skipped.
// Flags: --watch (rebuild on change), --production (minify, no source maps).
import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const watch = process.argv.includes('--watch');
const production = process.argv.includes('--production');

// vscode is provided by the editor; onnxruntime-node carries native binaries and is
// shipped as a node_modules folder rather than bundled.
const external = ['vscode', 'onnxruntime-node'];

const node = { platform: 'node', format: 'cjs', target: 'node20', external };
const entries = [
  { in: 'extension/src/extension.ts', out: 'dist/extension.js', ...node },
  { in: 'backend/src/server.ts', out: 'dist/server.js', ...node },
  // The engine's worker thread; server.js starts it from its own folder (backend/src/engineHost.ts).
  { in: 'backend/src/engineWorker.ts', out: 'dist/engineWorker.js', ...node },
  // The session's own thread, started by the engine (backend/src/engine/sessionThread.ts) from its bundle's folder.
  { in: 'backend/src/engine/sessionWorker.ts', out: 'dist/sessionWorker.js', ...node },
  { in: 'backend/src/cli.ts', out: 'dist/cli.js', ...node, banner: { js: '#!/usr/bin/env node' } },
  { in: 'media/webview/main.ts', out: 'dist/webview.js', platform: 'browser', format: 'iife', target: 'es2022' },
  // Tools (backend/src/tools): the GPU benchmark; scripts/pack-node-for-gpu.sh carries it. The CPU
  // benchmark is part of dist/cli.js (`vffn bench`); bench:peer runs from source (tsx).
  { in: 'backend/src/tools/gpuBench.ts', out: 'dist/gpuBench.js', ...node },
  // Our side of bench:peer, which bundles it again before each run; built here too so that running it
  // alone (docs/SPEED.md's memory A/Bs) never runs a bundle older than the sources.
  { in: 'backend/src/tools/peerOurs.ts', out: 'dist/peer-ours.js', ...node },
];

const contexts = [];
for (const entry of entries) {
  if (!existsSync(resolve(root, entry.in))) {
    console.log(`skip ${entry.in} (not there yet)`);
    continue;
  }
  const { in: input, out, ...rest } = entry;
  contexts.push(await esbuild.context({
    ...rest,
    absWorkingDir: root,
    entryPoints: [input],
    outfile: out,
    bundle: true,
    minify: production,
    sourcemap: production ? false : 'linked',
    logLevel: 'info',
    // ESM-only packages (e.g. @huggingface/tokenizers) use import.meta.url; give CJS a value.
    define: rest.platform === 'node' ? { 'import.meta.url': 'importMetaUrl' } : undefined,
    inject: rest.platform === 'node' ? [resolve(root, 'scripts/import-meta-url.js')] : undefined,
  }));
}

if (watch) {
  await Promise.all(contexts.map((c) => c.watch()));
  console.log('watching for changes…');
} else {
  try {
    await Promise.all(contexts.map((c) => c.rebuild()));
  } catch {
    process.exitCode = 1;
  } finally {
    await Promise.all(contexts.map((c) => c.dispose()));
  }
}
