// Starts code-server (VS Code in the browser) with the extension installed unpacked in a
// throwaway profile. Needs `bash scripts/setup-e2e.sh` (code-server in build/e2e) and a
// built dist/ (`node scripts/build.mjs`). Everything lives in one temp folder that
// stop() deletes; every wait is bounded.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

export const REPO = path.resolve(__dirname, '..', '..');
export const CODE_SERVER_BIN = path.join(REPO, 'build', 'e2e', 'node_modules', '.bin', 'code-server');
export const EXTENSION_FOLDER = 'versatileffn.versatileffn-code-0.1.0';

export interface ProfileOptions {
  /** Folder holding package.json, dist/, media/ and models/ (the repo, or a test double). */
  extensionSource: string;
  /** Model folders to install: name in the installed extension -> source folder. */
  models: Record<string, string>;
  /** User settings merged over the defaults below. */
  settings?: Record<string, unknown>;
  /** Workspace files: relative path -> content. */
  files: Record<string, string>;
}

export interface Profile {
  root: string;
  userDataDir: string;
  extensionsDir: string;
  extensionDir: string;
  workspace: string;
  logFile: string;
}

const DEFAULT_SETTINGS = {
  'security.workspace.trust.enabled': false,
  'workbench.startupEditor': 'none',
  'workbench.tips.enabled': false,
  'workbench.enableExperiments': false,
  'telemetry.telemetryLevel': 'off',
  'extensions.autoCheckUpdates': false,
  'extensions.autoUpdate': false,
  'update.mode': 'none',
  'editor.inlineSuggest.enabled': true,
  'editor.quickSuggestions': { other: false, comments: false, strings: false },
  'editor.suggestOnTriggerCharacters': false,
  'editor.wordBasedSuggestions': 'off',
  'editor.acceptSuggestionOnEnter': 'off',
  'editor.autoClosingBrackets': 'never',
  'editor.autoClosingQuotes': 'never',
  'editor.minimap.enabled': false,
  'files.autoSave': 'off',
  'window.restoreWindows': 'none',
  'workbench.colorTheme': 'Default Dark Modern',
  'chat.commandCenter.enabled': false,
};

// Runtime packages the bundle leaves external (native binaries), copied next to dist/.
const RUNTIME_PACKAGES = ['onnxruntime-node', 'onnxruntime-common'];

export function createProfile(opts: ProfileOptions): Profile {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'vffn-e2e-'));
  const userDataDir = path.join(root, 'user-data');
  const extensionsDir = path.join(root, 'extensions');
  const workspace = path.join(root, 'workspace');
  const extensionDir = path.join(extensionsDir, EXTENSION_FOLDER);
  fs.mkdirSync(path.join(userDataDir, 'User'), { recursive: true });
  fs.writeFileSync(
    path.join(userDataDir, 'User', 'settings.json'),
    JSON.stringify({ ...DEFAULT_SETTINGS, ...opts.settings }, null, 2),
  );

  const src = opts.extensionSource;
  const dist = path.join(src, 'dist');
  if (!fs.existsSync(path.join(dist, 'extension.js'))) {
    throw new Error(`${dist}/extension.js is missing: build first with \`node scripts/build.mjs\``);
  }
  fs.mkdirSync(extensionDir, { recursive: true });
  fs.copyFileSync(path.join(src, 'package.json'), path.join(extensionDir, 'package.json'));
  for (const dir of ['dist', 'media']) {
    if (fs.existsSync(path.join(src, dir))) {
      fs.cpSync(path.join(src, dir), path.join(extensionDir, dir), { recursive: true });
    }
  }
  for (const [name, from] of Object.entries(opts.models)) {
    if (!fs.existsSync(path.join(from, 'manifest.json'))) {
      throw new Error(`model folder ${from} has no manifest.json: export it first (models/toolchain/export.py)`);
    }
    fs.cpSync(from, path.join(extensionDir, 'models', name), { recursive: true });
    const manifestPath = path.join(extensionDir, 'models', name, 'manifest.json');
    const manifest = JSON.parse(fs.readFileSync(manifestPath, 'utf8'));
    if (manifest.name !== name) {
      // A copy under another name (switch-model scenario): its id must follow the folder.
      manifest.name = name;
      if (manifest.display_name) manifest.display_name = `${manifest.display_name} (${name})`;
      fs.writeFileSync(manifestPath, JSON.stringify(manifest, null, 2));
    }
  }
  for (const pkg of RUNTIME_PACKAGES) {
    const from = path.join(src, 'node_modules', pkg);
    if (fs.existsSync(from)) {
      fs.mkdirSync(path.join(extensionDir, 'node_modules'), { recursive: true });
      fs.symlinkSync(fs.realpathSync(from), path.join(extensionDir, 'node_modules', pkg), 'dir');
    }
  }

  for (const [rel, content] of Object.entries(opts.files)) {
    fs.mkdirSync(path.dirname(path.join(workspace, rel)), { recursive: true });
    fs.writeFileSync(path.join(workspace, rel), content);
  }
  fs.mkdirSync(workspace, { recursive: true });
  cleanupOnExit.add(() => fs.rmSync(root, { recursive: true, force: true }));
  return { root, userDataDir, extensionsDir, extensionDir, workspace, logFile: path.join(root, 'code-server.log') };
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

export interface CodeServer {
  url: string;
  pid: number;
  /** Kills code-server and everything it started (extension host, backend). Idempotent. */
  stop(): Promise<void>;
}

export async function startCodeServer(profile: Profile, timeoutMs = 60_000): Promise<CodeServer> {
  if (!fs.existsSync(CODE_SERVER_BIN)) {
    throw new Error(`${CODE_SERVER_BIN} is missing: run \`bash scripts/setup-e2e.sh\` first`);
  }
  const port = await freePort();
  const log = fs.openSync(profile.logFile, 'a');
  // detached: its own process group, so one kill(-pid) reaches the extension host and
  // the backend it spawned.
  const child: ChildProcess = spawn(
    CODE_SERVER_BIN,
    [
      '--auth', 'none',
      '--bind-addr', `127.0.0.1:${port}`,
      '--extensions-dir', profile.extensionsDir,
      '--user-data-dir', profile.userDataDir,
      '--disable-telemetry',
      '--disable-update-check',
      '--disable-workspace-trust',
      '--disable-getting-started-override',
      profile.workspace,
    ],
    {
      detached: true,
      stdio: ['ignore', log, log],
      env: { ...process.env, VSCODE_CLI: undefined, ELECTRON_RUN_AS_NODE: undefined },
    },
  );
  fs.closeSync(log);
  const pid = child.pid!;
  let exited = false;
  child.on('exit', () => (exited = true));

  const stop = async (): Promise<void> => {
    killTree(pid, profile.root);
    const until = Date.now() + 5_000;
    while (!exited && Date.now() < until) await sleep(100);
    if (!exited) {
      try { process.kill(-pid, 'SIGKILL'); } catch { /* gone */ }
    }
    killStragglers(profile.root, 'SIGKILL');
  };
  cleanupOnExit.add(() => { killTree(pid, profile.root, 'SIGKILL'); });

  const url = `http://127.0.0.1:${port}/`;
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (exited) break;
    try {
      const res = await fetch(`${url}healthz`, { signal: AbortSignal.timeout(2_000) });
      if (res.ok) return { url, pid, stop };
    } catch { /* not up yet */ }
    await sleep(300);
  }
  await stop();
  throw new Error(
    `code-server did not answer on ${url} within ${timeoutMs} ms` +
    `${exited ? ' (it exited)' : ''}; its log:\n${tail(profile.logFile, 30)}`,
  );
}

/** Process ids below `root` in the process tree (children, grandchildren, ...). */
export function descendants(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      // /proc/<pid>/stat: "pid (comm) state ppid ..."; comm may hold spaces and parens.
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(entry)]);
    } catch { /* exited meanwhile */ }
  }
  const out: number[] = [];
  const todo = [root];
  while (todo.length) {
    for (const c of children.get(todo.pop()!) ?? []) { out.push(c); todo.push(c); }
  }
  return out;
}

export function commandLine(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ').trim();
  } catch {
    return '';
  }
}

/** Process ids whose command line contains all the given substrings. */
export function pgrep(...parts: string[]): number[] {
  let out = '';
  try {
    out = execFileSync('pgrep', ['-f', '--', parts[0]], { encoding: 'utf8' });
  } catch {
    return []; // pgrep exits 1 when nothing matches
  }
  return out.split('\n').filter(Boolean).map(Number).filter((pid) => {
    if (pid === process.pid) return false;
    const cmd = commandLine(pid);
    return parts.every((p) => cmd.includes(p));
  });
}

function killTree(pid: number, root: string, signal: NodeJS.Signals = 'SIGTERM'): void {
  try { process.kill(-pid, signal); } catch { /* gone */ }
  killStragglers(root, signal);
}

/** Anything still running from the test's temp folder (a backend that left the group). */
function killStragglers(root: string, signal: NodeJS.Signals): void {
  for (const p of pgrep(root)) {
    try { process.kill(p, signal); } catch { /* gone */ }
  }
}

export function removeProfile(profile: Profile, keepLogsIn?: string): void {
  if (keepLogsIn) {
    fs.mkdirSync(keepLogsIn, { recursive: true });
    try { fs.copyFileSync(profile.logFile, path.join(keepLogsIn, 'code-server.log')); } catch { /* none */ }
    const logs = path.join(profile.userDataDir, 'logs');
    if (fs.existsSync(logs)) fs.cpSync(logs, path.join(keepLogsIn, 'vscode-logs'), { recursive: true });
  }
  fs.rmSync(profile.root, { recursive: true, force: true });
}

// Last resort: if the test runner exits without running its hooks, leave nothing behind.
const cleanupOnExit = new Set<() => void>();
process.on('exit', () => {
  for (const fn of [...cleanupOnExit].reverse()) { // processes first, then their folders
    try { fn(); } catch { /* keep cleaning */ }
  }
});
for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143], ['SIGHUP', 129]] as const) {
  process.once(signal, () => process.exit(code)); // runs the 'exit' cleanup above
}

/** The "VersatileFFN" output channel as VS Code writes it to the profile's log folder (backend lines included). */
export function extensionLog(profile: Profile): string {
  const found: string[] = [];
  const walk = (dir: string) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('VersatileFFN.log')) found.push(p);
    }
  };
  const logs = path.join(profile.userDataDir, 'logs');
  if (fs.existsSync(logs)) walk(logs);
  return found.map((f) => fs.readFileSync(f, 'utf8')).join('\n');
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function tail(file: string, lines: number): string {
  try {
    return fs.readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/** Hard stop for a scenario file: whatever hangs, nothing outlives `minutes` (then teardown, exit 1). */
export function hardStop(minutes: number, teardown: () => Promise<void>): void {
  const timer = setTimeout(() => {
    console.error(`e2e watchdog: ${minutes} minutes passed, tearing down`);
    void teardown().finally(() => process.exit(1));
  }, minutes * 60_000);
  timer.unref();
}
