// End-to-end: the built extension in real VS Code (code-server + headless Chromium).
//   bash scripts/setup-e2e.sh && node scripts/build.mjs && npm run test:e2e
// The scenarios share one editor session and run in order; each takes a screenshot into
// test-results/e2e/. VFFN_E2E_EXTENSION=<folder> runs them against another build of the
// extension (a folder with package.json and dist/).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Frame, Page } from 'playwright-core';
import {
  REPO, commandLine, createProfile, descendants, extensionLog, hardStop, removeProfile, sleep, startCodeServer,
  type CodeServer, type Profile,
} from './codeServer';
import {
  findFrame, fromView, ghostText, openFile, openWorkbench, runCommand, screenshot, statusText,
  waitForGhostText, waitForReady, type Workbench,
} from './browser';

const ARTIFACTS = process.env.VFFN_E2E_ARTIFACTS ?? path.join(REPO, 'test-results', 'e2e');
const EXTENSION = process.env.VFFN_E2E_EXTENSION ?? REPO;
const MODEL_FOLDER = 'tiny-test';
// Switch Model goes to the dense tiny model when it exists, else to a copy of tiny-test
// under another name. Both names come from the manifests (read in before()).
const SECOND_MODEL_FOLDER = 'tiny-test-dense';
let MODEL = 'tiny-test';
let SECOND_MODEL = 'tiny-test-copy';
const FILE = 'fib.py';
const SOURCE = 'def fib(n):\n    if n < 2:\n        return n\n';
const GHOST_TIMEOUT = 30_000;

let profile: Profile | undefined;
let server: CodeServer | undefined;
let wb: Workbench | undefined;
let page: Page;
let step = 0;

hardStop(10, teardown);

async function teardown(): Promise<void> {
  await wb?.close().catch(() => {});
  wb = undefined;
  await server?.stop().catch(() => {});
  server = undefined;
  if (profile) removeProfile(profile, path.join(ARTIFACTS, 'logs'));
  profile = undefined;
}

async function shot(name: string): Promise<void> {
  step += 1;
  await screenshot(page, ARTIFACTS, `${String(step).padStart(2, '0')}-${name}`);
}

/** Runs a step; on failure saves a screenshot named after it, then rethrows. */
async function withShot(name: string, body: () => Promise<void>): Promise<void> {
  try {
    await body();
    await shot(name);
  } catch (err) {
    if (wb) await shot(`${name}-FAILED`);
    throw err;
  }
}

/** The editor's text from the DOM, without ghost text (small files: every line is rendered). */
async function editorText(): Promise<string> {
  return page.evaluate(() => {
    const editor = document.querySelector('.editor-instance .monaco-editor');
    const lines = Array.from(editor?.querySelectorAll<HTMLElement>('.view-lines .view-line') ?? []);
    lines.sort((a, b) => parseFloat(a.style.top) - parseFloat(b.style.top));
    return lines.map((line) => {
      const copy = line.cloneNode(true) as HTMLElement;
      copy.querySelectorAll('[class*="ghost-text"]').forEach((g) => g.remove());
      return copy.textContent ?? '';
    }).join('\n');
  }).then(fromView);
}

/** What `after` has inserted into `before` (common prefix and suffix removed). */
function inserted(before: string, after: string): string {
  let p = 0;
  while (p < before.length && before[p] === after[p]) p++;
  let s = 0;
  while (s < before.length - p && before[before.length - 1 - s] === after[after.length - 1 - s]) s++;
  return after.slice(p, after.length - s);
}

async function focusEditor(): Promise<void> {
  await page.locator('.editor-instance .monaco-editor .view-lines').first().click();
}

/** Types at the end of the file and waits for ghost text. */
async function typeAndWaitForGhost(text: string): Promise<string> {
  await page.keyboard.press('Control+End');
  await page.keyboard.type(text, { delay: 30 });
  return waitForGhostText(page, GHOST_TIMEOUT);
}

/** The backend processes (dist/server.js) below this test's code-server. */
function backendPids(): number[] {
  if (!server) return [];
  return descendants(server.pid).filter((pid) => commandLine(pid).includes('dist/server.js'));
}

before(async () => {
  fs.rmSync(ARTIFACTS, { recursive: true, force: true });
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  // A test double of the extension (VFFN_E2E_EXTENSION) may come without models.
  const models: Record<string, string> = {};
  const src = path.join(EXTENSION, 'models', MODEL_FOLDER);
  if (EXTENSION === REPO || fs.existsSync(src)) {
    if (!fs.existsSync(path.join(src, 'manifest.json'))) {
      throw new Error(`${src} is missing: make the test models with \`.venv/bin/python models/toolchain/make_test_models.py\``);
    }
    const nameOf = (dir: string): string => JSON.parse(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8')).name;
    MODEL = nameOf(src);
    const second = path.join(EXTENSION, 'models', SECOND_MODEL_FOLDER);
    SECOND_MODEL = fs.existsSync(second) ? nameOf(second) : `${MODEL}-copy`;
    models[MODEL] = src;
    models[SECOND_MODEL] = fs.existsSync(second) ? second : src;
  }
  profile = createProfile({
    extensionSource: EXTENSION,
    models,
    settings: {
      'versatileffn.debounceMs': 50,
      'versatileffn.defaultModel': MODEL,
      'versatileffn.provider': 'cpu',
      'versatileffn.threads': 1, // a 2-core machine shared with the editor and the browser
    },
    files: { [FILE]: SOURCE, 'README.md': '# e2e workspace\n' },
  });
  server = await startCodeServer(profile, 60_000);
  wb = await openWorkbench(server.url, 90_000);
  page = wb.page;
}, { timeout: 180_000 });

after(teardown, { timeout: 30_000 });

/** The inspector's frame (webviews sit two iframes deep). */
async function inspectorFrame(): Promise<Frame> {
  return findFrame(page, '[data-testid="inspector-root"]', 30_000);
}

/** Token text as the inspector shows it, back to plain text (it draws · for a space, → for a tab, ↵ for a newline). */
const unvisible = (s: string): string => s.replace(/·/g, ' ').replace(/→/g, '\t').replace(/↵/g, '\n').replace(/∅/g, '');
/** For comparing text across views: no whitespace, no U+FFFD (a token may end inside a UTF-8 character). */
const squash = (s: string): string => s.replace(/[\s\ufffd]+/g, '');

/** Waits until the inspector shows a run whose tokens hold `ghost` (it updates live); returns the token texts. */
async function waitForInspectorRun(frame: Frame, ghost: string, model: string, timeoutMs: number): Promise<string[]> {
  const want = squash(ghost);
  const deadline = Date.now() + timeoutMs;
  let shown = '';
  let runModel = '';
  while (Date.now() < deadline) {
    const tokens = (await frame.locator('[data-testid="token"]').allTextContents()).map(unvisible);
    shown = squash(tokens.join(''));
    runModel = (await frame.locator('[data-testid="run-model"]').first().textContent({ timeout: 1_000 }).catch(() => '')) ?? '';
    // Generated tokens come before trimming, and the editor may still show the rest of an
    // earlier completion (typed-through): one must start inside the other.
    const n = Math.min(8, want.length, shown.length);
    const same = n > 0 && (shown.includes(want.slice(0, n)) || want.includes(shown.slice(0, n)));
    if (same && new RegExp(`(^|\\s)${escapeRe(model)}(\\s|$)`).test(runModel)) return tokens;
    await sleep(300);
  }
  throw new Error(`the inspector does not show the completion ${JSON.stringify(want)} from ${model}; ` +
    `it shows ${JSON.stringify(shown)} from "${runModel.trim()}"`);
}

const escapeRe = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

let firstGhost = '';

test('open a source file and the routing inspector, type, and see ghost text from the model', { timeout: 120_000 }, async () => {
  await withShot('ghost-text', async () => {
    await openFile(page, FILE);
    await waitForReady(page, MODEL, 60_000);
    // The inspector lives in the side bar and updates live while the editor has focus.
    await runCommand(page, 'VersatileFFN: Show Routing Inspector');
    await inspectorFrame();
    await focusEditor();
    firstGhost = await typeAndWaitForGhost('\n    return fib(');
    console.log(`ghost text: ${JSON.stringify(firstGhost)}; status: ${await statusText(page)}`);
  });
});

test('the routing inspector shows the tokens and heat map of that completion', { timeout: 60_000 }, async (t) => {
  if (!firstGhost) return t.skip('no ghost text in the previous step');
  await withShot('inspector', async () => {
    const frame = await inspectorFrame();
    const tokens = await waitForInspectorRun(frame, firstGhost, MODEL, 15_000);
    const heatmap = frame.locator('[data-testid="heatmap"]').first();
    await heatmap.waitFor({ state: 'attached', timeout: 5_000 });
    assert.equal(Number(await heatmap.getAttribute('data-tokens')), tokens.length, 'heat map has one column per token');
    const cells = await frame.locator('[data-testid="heatmap-cell"]').count();
    const layers = Number(await heatmap.getAttribute('data-layers'));
    assert.ok(layers > 0 && cells === tokens.length * layers, `heat map has ${cells} cells for ${tokens.length} tokens × ${layers} layers`);
    console.log(`inspector: ${tokens.length} tokens × ${layers} layers: ${JSON.stringify(tokens.join(''))}`);
  });
});

test('Tab accepts the ghost text into the document', { timeout: 60_000 }, async (t) => {
  if (!firstGhost) return t.skip('no ghost text in the previous step');
  await withShot('tab-accepted', async () => {
    const before = await editorText();
    const ghost = await ghostText(page);
    assert.ok(ghost.trim(), 'ghost text is still shown before Tab');
    await page.keyboard.press('Tab');
    await sleep(300);
    const afterTab = await editorText();
    const added = inserted(before, afterTab);
    assert.equal(squash(added), squash(ghost), `Tab inserted ${JSON.stringify(added)}, ghost was ${JSON.stringify(ghost)}`);
    // The document (not only the view) changed: save and read the file back.
    await page.keyboard.press('Escape');
    await page.keyboard.press('Control+S');
    const file = path.join(profile!.workspace, FILE);
    const want = squash(`return fib(${ghost}`);
    // Poll for the saved text itself: the editor truncates the file before writing it, so a read between
    // the two sees "" (seen under load), which is neither the old text nor the new one.
    const deadline = Date.now() + 10_000;
    let onDisk = fs.readFileSync(file, 'utf8');
    while (!squash(onDisk).includes(want) && Date.now() < deadline) {
      await sleep(200);
      onDisk = fs.readFileSync(file, 'utf8');
    }
    assert.ok(squash(onDisk).includes(want), `saved file: ${JSON.stringify(onDisk)}`);
  });
});

/** The extension's output channel in this run's profile. */
const outputLog = () => extensionLog(profile!);

const PREFILL_LINE = /prefill p\d+-\w+: read (\d+) of (\d+) prompt tokens in \d+ ms \((\w+)\)/g;

test('a cursor that rests on a line has its prompt read ahead; typing there reuses it', { timeout: 60_000 }, async () => {
  await withShot('prefill-on-rest', async () => {
    const frame = await inspectorFrame();
    const before = [...outputLog().matchAll(PREFILL_LINE)].length;
    // A blank first line makes the end of the file a place no completion was asked for yet; then the
    // cursor goes there by key (VS Code asks for no completion on a cursor move) and rests.
    await page.keyboard.press('Control+Home');
    await page.keyboard.press('Enter');
    await sleep(300);
    await page.keyboard.press('Control+End');
    const deadline = Date.now() + 20_000;
    let reads: RegExpMatchArray[] = [];
    while (Date.now() < deadline) {
      reads = [...outputLog().matchAll(PREFILL_LINE)].slice(before);
      if (reads.length) break;
      await sleep(250);
    }
    assert.ok(reads.length > 0, `no prefill in the log within 20 s of the cursor resting; log tail: ${outputLog().slice(-1500)}`);
    const read = reads[reads.length - 1]!;
    console.log(`prefill on rest: ${read[0]}`);
    assert.equal(read[3], 'read', 'the prompt was read to its end (not superseded)');
    const timelineText = async () => (await frame.locator('[data-testid="timeline"]').first().textContent({ timeout: 1_000 }).catch(() => '')) ?? '';
    const shownBefore = await timelineText();
    await page.keyboard.type(' ');
    const until = Date.now() + 20_000;
    let m: RegExpMatchArray | null = null;
    while (Date.now() < until) {
      const text = await timelineText();
      m = text !== shownBefore ? text.match(/prompt (\d+) tokens \((\d+) reused from cache\)/) : null;
      if (m) break;
      await sleep(250);
    }
    assert.ok(m, 'the inspector shows the completion after the typed character');
    console.log(`completion after the rest: ${m[0]}`);
    // Everything up to the typed character came from the prefill (at the end of the file there is no suffix to re-run).
    assert.ok(Number(m[1]) - Number(m[2]) <= 8, m[0]);
  });
});

test('Switch Model from the command palette changes the status bar; completions still work', { timeout: 120_000 }, async () => {
  await withShot('switch-model-pick', async () => {
    await runCommand(page, 'VersatileFFN: Switch Model');
    const row = page.locator('.quick-input-list .monaco-list-row', { hasText: SECOND_MODEL }).first();
    await row.waitFor({ state: 'visible', timeout: 15_000 });
  });
  await withShot('switch-model-done', async () => {
    await page.locator('.quick-input-list .monaco-list-row', { hasText: SECOND_MODEL }).first().click();
    const text = await waitForReady(page, SECOND_MODEL, 60_000);
    console.log(`status after switch: ${text}`);
  });
  await withShot('switch-model-ghost', async () => {
    await focusEditor();
    const ghost = await typeAndWaitForGhost('\n    x = fib(');
    await waitForInspectorRun(await inspectorFrame(), ghost, SECOND_MODEL, 15_000);
    console.log(`ghost text on ${SECOND_MODEL}: ${JSON.stringify(ghost)}`);
  });
});

test('a killed backend comes back and completes again', { timeout: 120_000 }, async () => {
  await withShot('backend-killed', async () => {
    const pids = backendPids();
    assert.ok(pids.length > 0, 'a backend process (dist/server.js) runs under this code-server');
    console.log(`killing backend ${pids.join(',')}: ${commandLine(pids[0]!)}`);
    for (const pid of pids) process.kill(pid, 'SIGKILL');
    const seen = new Set<string>();
    const deadline = Date.now() + 60_000;
    let fresh: number[] = [];
    while (Date.now() < deadline) {
      seen.add(await statusText(page));
      fresh = backendPids().filter((p) => !pids.includes(p));
      if (fresh.length) break;
      await sleep(200);
    }
    console.log(`status while restarting: ${[...seen].map((t) => JSON.stringify(t)).join(' -> ')}`);
    assert.ok(fresh.length > 0, 'a new backend process started within 60 s');
  });
  await withShot('backend-back', async () => {
    const text = await waitForReady(page, SECOND_MODEL, 60_000);
    console.log(`status after restart: ${text}`);
    await page.keyboard.press('Escape');
    await focusEditor();
    const ghost = await typeAndWaitForGhost('\n    y = fib(');
    await waitForInspectorRun(await inspectorFrame(), ghost, SECOND_MODEL, 15_000);
    console.log(`ghost text after restart: ${JSON.stringify(ghost)}`);
  });
});
