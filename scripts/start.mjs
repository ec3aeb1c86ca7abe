// `npm start`: run the product on the bundled default model.
// With desktop VS Code on PATH (`code`), it opens VS Code with this folder as an extension
// under development. Otherwise it serves VS Code in the browser (code-server, installed by
// `npm run setup`) on 127.0.0.1 with the extension installed, and prints the address.
// Usage: npm start [-- FOLDER]   (env VFFN_PORT picks the port; default 8080)
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const runDir = path.join(repo, 'build', 'run');
const folder = path.resolve(process.argv[2] ?? path.join(runDir, 'workspace'));

if (!fs.existsSync(path.join(repo, 'dist', 'extension.js'))) {
  const built = spawnSync(process.execPath, [path.join(repo, 'scripts', 'build.mjs')], { stdio: 'inherit' });
  if (built.status !== 0) process.exit(built.status ?? 1);
}
if (!process.argv[2] && !fs.existsSync(folder)) {
  fs.mkdirSync(folder, { recursive: true });
  fs.writeFileSync(path.join(folder, 'example.py'),
    'def fibonacci(n):\n    """Return the n-th Fibonacci number."""\n    a, b = 0, 1\n    for _ in range(n):\n        ');
  fs.writeFileSync(path.join(folder, 'example.ts'),
    'export function clamp(value: number, low: number, high: number): number {\n  \n}\n');
}

const desktop = spawnSync('code', ['--version'], { stdio: 'ignore' });
if (desktop.status === 0) {
  console.log(`Opening VS Code with the extension from ${repo} on ${folder}`);
  spawn('code', [`--extensionDevelopmentPath=${repo}`, folder], { stdio: 'inherit', detached: true }).unref();
  process.exit(0);
}

const codeServer = path.join(repo, 'build', 'e2e', 'node_modules', '.bin', 'code-server');
if (!fs.existsSync(codeServer)) {
  console.error(`Neither desktop VS Code ('code') nor code-server (${codeServer}) is installed: run \`npm run setup\` first.`);
  process.exit(1);
}

// The installed extension is a link to this checkout, so a rebuild is picked up on reload.
const extensionsDir = path.join(runDir, 'extensions');
const userDataDir = path.join(runDir, 'user-data');
const link = path.join(extensionsDir, 'versatileffn.versatileffn-code-0.1.0');
fs.mkdirSync(extensionsDir, { recursive: true });
fs.mkdirSync(path.join(userDataDir, 'User'), { recursive: true });
if (!fs.existsSync(link)) fs.symlinkSync(repo, link, 'dir');
const settingsFile = path.join(userDataDir, 'User', 'settings.json');
if (!fs.existsSync(settingsFile)) {
  fs.writeFileSync(settingsFile, JSON.stringify({
    'security.workspace.trust.enabled': false,
    'workbench.startupEditor': 'none',
    'editor.inlineSuggest.enabled': true,
    'telemetry.telemetryLevel': 'off',
    // The sample workspace lives inside this checkout; don't offer to open its repository.
    'git.openRepositoryInParentFolders': 'never',
  }, null, 2));
}

const port = Number(process.env.VFFN_PORT ?? 8080);
console.log(`VersatileFFN Code in VS Code (code-server): http://127.0.0.1:${port}/  (Ctrl-C stops it)`);
const child = spawn(codeServer, [
  '--auth', 'none', '--bind-addr', `127.0.0.1:${port}`,
  '--extensions-dir', extensionsDir, '--user-data-dir', userDataDir,
  '--disable-telemetry', '--disable-update-check', folder,
], { stdio: 'inherit' });
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => child.kill(signal));
child.on('exit', (code) => process.exit(code ?? 0));
