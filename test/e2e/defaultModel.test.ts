// End-to-end with the real default model (Qwen2.5-Coder-0.5B upcycled, built by `npm run setup`):
// real VS Code (code-server + headless Chromium), real backend, real 0.5B model on the CPU.
// Skipped, with the reason, when the set-up has not built the model.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Page } from 'playwright-core';
import { REPO, createProfile, extensionLog, hardStop, removeProfile, sleep, startCodeServer, type CodeServer, type Profile } from './codeServer';
import { ghostText, openFile, openWorkbench, screenshot, statusItem, statusText, waitForGhostText, waitForReady, type Workbench } from './browser';

const ARTIFACTS = path.join(process.env.VFFN_E2E_ARTIFACTS ?? path.join(REPO, 'test-results', 'e2e'), 'default-model');
const FOLDER = path.join(REPO, 'models', 'qwen2.5-coder-0.5b-vffn');
const built = fs.existsSync(path.join(FOLDER, 'manifest.json'));
const skip = built ? false : `${FOLDER} is not built (npm run setup builds it)`;
const MODEL = built ? (JSON.parse(fs.readFileSync(path.join(FOLDER, 'manifest.json'), 'utf8')).name as string) : '';

// A file long enough that reading its prompt takes the 0.5B model seconds on a CPU.
const LONG_FILE = Array.from({ length: 60 }, (_, i) =>
  `def handler_${i}(request, config):\n    """Answers request kind ${i} within the configured limit."""\n` +
  `    limit = config.get("limit_${i}", ${i * 16})\n    return request.respond(min(limit, request.size))\n\n`).join('');

let profile: Profile | undefined;
let server: CodeServer | undefined;
let wb: Workbench | undefined;
let page: Page;

hardStop(8, teardown);

async function teardown(): Promise<void> {
  await wb?.close().catch(() => {});
  wb = undefined;
  await server?.stop().catch(() => {});
  server = undefined;
  if (profile) removeProfile(profile, path.join(ARTIFACTS, 'logs'));
  profile = undefined;
}

before(async () => {
  if (!built) return;
  fs.rmSync(ARTIFACTS, { recursive: true, force: true });
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  profile = createProfile({
    extensionSource: REPO,
    // the real folder, not the link: the profile gets its own copy, as an installed extension would
    models: { [MODEL]: fs.realpathSync(FOLDER) },
    // A generous time limit: the multi-line test expects the whole constructor body however busy the machine is.
    settings: { 'versatileffn.debounceMs': 50, 'versatileffn.defaultModel': MODEL, 'versatileffn.provider': 'cpu', 'versatileffn.maxTimeMs': 10_000 },
    files: { 'add.py': 'def add(a, b):\n', 'point.py': 'class Point:\n    def __init__(self, x, y):', 'handlers.py': LONG_FILE, 'README.md': '# e2e workspace\n' },
  });
  server = await startCodeServer(profile, 60_000);
  wb = await openWorkbench(server.url, 90_000);
  page = wb.page;
}, { timeout: 240_000 });

after(teardown, { timeout: 30_000 });

test('the real default model completes `return ` in add(a, b) with a + b as ghost text', { skip, timeout: 240_000 }, async () => {
  try {
    await openFile(page, 'add.py');
    await waitForReady(page, MODEL, 120_000);
    await page.keyboard.press('Control+End');
    await page.keyboard.type('    return ', { delay: 30 });
    const ghost = await waitForGhostText(page, 60_000);
    console.log(`ghost text from ${MODEL}: ${JSON.stringify(ghost)}; status: ${await statusText(page)}`);
    await screenshot(page, ARTIFACTS, '01-ghost-text');
    assert.match(ghost.replace(/\s+/g, ' '), /^a \+ b/);
  } catch (err) {
    if (wb) await screenshot(page, ARTIFACTS, '01-ghost-text-FAILED');
    throw err;
  }
});

/** The extension's output channel in this run's profile. */
const outputLog = () => extensionLog(profile!);

// VS Code shows nothing until a provider returns, and the 1 s generation limit often ends a multi-line
// completion: its first line is shown as soon as the backend has it, and the ghost text grows to the
// whole completion when that arrives (provider.ts showRestLater).
test('a multi-line completion shows its first line, then grows to the whole completion', { skip, timeout: 120_000 }, async () => {
  try {
    await openFile(page, 'point.py');
    await page.keyboard.press('Control+End');
    await page.keyboard.press('Enter');   // VS Code indents the constructor's body
    const seen: string[] = [];
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline) {
      const ghost = (await ghostText(page)).replace(/\s+$/, '');
      if (ghost.trim() && seen[seen.length - 1] !== ghost) seen.push(ghost);
      if (/self\.y = y/.test(ghost)) break;
      await sleep(40);
    }
    console.log(`ghost text as it was shown: ${JSON.stringify(seen)}`);
    await screenshot(page, ARTIFACTS, '02-multi-line');
    const last = seen[seen.length - 1] ?? '';
    assert.match(last, /self\.x = x\n\s*self\.y = y/, 'the ghost text grew to both assignments');
    const shown = [...outputLog().matchAll(/first line shown after (\d+) ms, whole completion after (\d+) ms/g)];
    assert.ok(shown.length > 0, `the provider showed a first line before the whole completion; log tail: ${outputLog().slice(-1500)}`);
    const [, firstMs, wholeMs] = shown[shown.length - 1]!;
    console.log(`first line after ${firstMs} ms, whole completion after ${wholeMs} ms`);
    assert.ok(Number(firstMs) <= Number(wholeMs));
  } catch (err) {
    if (wb) await screenshot(page, ARTIFACTS, '02-multi-line-FAILED');
    throw err;
  }
});

// VS Code asks for ghost text only after typing; while the cursor rests the extension has the backend
// read the prompt there (completion/prefill.ts), and the status bar shows it (readAhead.ts).
test('resting the cursor in a long file shows the prompt being read ahead, then ready again', { skip, timeout: 120_000 }, async () => {
  try {
    await openFile(page, 'handlers.py');
    await page.keyboard.press('Control+End');
    const seen: string[] = [];
    let readingSeen = false;
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline) {
      const item = await statusItem(page);
      const text = `${item.text} [${item.icons.join(',')}]`;
      if (seen[seen.length - 1] !== text) seen.push(text);
      if (item.icons.includes('eye') && /reading ahead$/.test(item.text)) readingSeen = true;
      if (readingSeen && item.icons.includes('check')) break;
      await sleep(100);
    }
    console.log(`status while resting: ${seen.map((t) => JSON.stringify(t)).join(' -> ')}`);
    await screenshot(page, ARTIFACTS, '03-read-ahead');
    assert.ok(readingSeen, 'the status bar showed the prompt being read ahead');
    assert.ok(seen[seen.length - 1]!.startsWith(`VFFN ${MODEL} · `) && seen[seen.length - 1]!.endsWith('[check]'), 'ready again after the read');
  } catch (err) {
    if (wb) await screenshot(page, ARTIFACTS, '03-read-ahead-FAILED');
    throw err;
  }
});
