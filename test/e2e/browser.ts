// Drives the VS Code workbench served by code-server in headless Debian Chromium through
// playwright-core. Only workbench-level helpers live here; the scenarios are in the test.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { chromium, type Browser, type Frame, type Page } from 'playwright-core';

export const CHROMIUM = process.env.VFFN_E2E_CHROMIUM ?? '/usr/bin/chromium';

export interface Workbench {
  browser: Browser;
  page: Page;
  close(): Promise<void>;
}

export async function openWorkbench(url: string, timeoutMs = 90_000): Promise<Workbench> {
  if (!fs.existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing: run \`bash scripts/setup-e2e.sh\` (installs Debian's chromium)`);
  }
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    timeout: 30_000,
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run',
      '--disable-dev-shm-usage',
    ],
  });
  const close = async (): Promise<void> => {
    await Promise.race([browser.close().catch(() => {}), new Promise((r) => setTimeout(r, 10_000))]);
  };
  try {
    const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
    const page = await context.newPage();
    page.setDefaultTimeout(15_000);
    await page.goto(url, { timeout: timeoutMs });
    await page.locator('.monaco-workbench').waitFor({ timeout: timeoutMs });
    await page.locator('.statusbar').waitFor({ timeout: timeoutMs });
    return { browser, page, close };
  } catch (err) {
    await close();
    throw err;
  }
}

export async function screenshot(page: Page, dir: string, name: string): Promise<string> {
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `${name}.png`);
  await page.screenshot({ path: file, timeout: 10_000 }).catch((err) => {
    console.error(`screenshot ${name} failed: ${err}`);
  });
  return file;
}

/** Runs a command by its palette label (e.g. "VersatileFFN: Switch Model"). */
export async function runCommand(page: Page, label: string): Promise<void> {
  await page.keyboard.press('F1');
  const input = page.locator('.quick-input-widget input');
  await input.waitFor({ state: 'visible' });
  await input.fill(`>${label}`);
  const row = page.locator('.quick-input-list .monaco-list-row', { hasText: label }).first();
  await row.waitFor({ state: 'visible' });
  await input.press('Enter');
}

/** Opens a workspace file with Quick Open and waits until its editor has focus. */
export async function openFile(page: Page, name: string): Promise<void> {
  await page.keyboard.press('Control+P');
  const input = page.locator('.quick-input-widget input');
  await input.waitFor({ state: 'visible' });
  await input.fill(name);
  await page.locator('.quick-input-list .monaco-list-row', { hasText: name }).first().waitFor();
  await input.press('Enter');
  await page.locator(`.tab[aria-label^="${name}"]`).first().waitFor();
  await page.locator('.editor-instance .monaco-editor textarea').first().waitFor({ state: 'attached' });
  await page.locator('.editor-instance .monaco-editor .view-lines').first().click();
}

/** The status bar item whose label starts with "VFFN": its text (codicons render empty)
 *  and the names of its codicons (e.g. "check" when ready). Empty when absent. */
export async function statusItem(page: Page): Promise<{ text: string; icons: string[] }> {
  return page.evaluate(() => {
    for (const item of Array.from(document.querySelectorAll('.statusbar-item'))) {
      const text = ((item as HTMLElement).innerText ?? '').replace(/\s+/g, ' ').trim();
      if (!text.startsWith('VFFN')) continue;
      const icons = Array.from(item.querySelectorAll('[class*="codicon-"]')).flatMap((el) =>
        Array.from(el.classList).filter((c) => c.startsWith('codicon-')).map((c) => c.slice('codicon-'.length)));
      return { text, icons };
    }
    return { text: '', icons: [] };
  });
}

export async function statusText(page: Page): Promise<string> {
  const { text, icons } = await statusItem(page);
  return icons.length ? `${text} [${icons.join(',')}]` : text;
}

/** Waits until the status bar says the backend is ready with `model` (a $(check) icon and
 *  "VFFN <model> · <provider>"); returns the text. */
export async function waitForReady(page: Page, model: string, timeoutMs: number): Promise<string> {
  const re = new RegExp(`^VFFN ${model.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} ·`);
  const deadline = Date.now() + timeoutMs;
  let last = { text: '', icons: [] as string[] };
  while (Date.now() < deadline) {
    last = await statusItem(page);
    if (last.icons.includes('check') && re.test(last.text)) return last.text;
    await page.waitForTimeout(250);
  }
  throw new Error(`status bar not ready with ${model} within ${timeoutMs} ms; last: "${last.text}" icons [${last.icons}]`);
}

/** Ghost text currently shown in the active editor (inline part and extra lines). */
export async function ghostText(page: Page): Promise<string> {
  return page.evaluate(() => {
    const parts: string[] = [];
    const editor = document.querySelector('.editor-instance .monaco-editor');
    if (!editor) return '';
    for (const el of Array.from(editor.querySelectorAll('.ghost-text-decoration, .ghost-text-decoration-preview'))) {
      parts.push(el.textContent ?? '');
    }
    // The lines after the first: in VS Code 1.100 (code-server 4.100) spans of class ghost-text, one
    // parent element per line; in earlier versions .view-line elements inside a .ghost-text zone.
    const lines = new Map<Element, string>();
    for (const span of Array.from(editor.querySelectorAll('span.ghost-text'))) {
      const line = span.parentElement ?? span;
      lines.set(line, (lines.get(line) ?? '') + (span.textContent ?? ''));
    }
    for (const line of Array.from(editor.querySelectorAll('.ghost-text .view-line'))) lines.set(line, line.textContent ?? '');
    for (const text of lines.values()) parts.push('\n' + text);
    return parts.join('');
  }).then(fromView);
}

/** Editor view text back to document text: the view draws a space as U+00A0 and a
 *  control character as its Control Pictures glyph (U+2400 + code). */
export function fromView(text: string): string {
  return text
    .replace(/\u00a0/g, ' ')
    .replace(/[\u2400-\u241f]/g, (c) => String.fromCharCode(c.charCodeAt(0) - 0x2400));
}

/** Waits for non-empty ghost text; returns it. */
export async function waitForGhostText(page: Page, timeoutMs: number): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const text = await ghostText(page);
    if (text.trim().length > 0) return text;
    await page.waitForTimeout(200);
  }
  throw new Error(`no ghost text (.ghost-text-decoration) within ${timeoutMs} ms`);
}

/** The frame (webviews nest two iframes deep) whose document has the selector. */
export async function findFrame(page: Page, selector: string, timeoutMs: number): Promise<Frame> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    for (const frame of page.frames()) {
      if (frame === page.mainFrame()) continue;
      const n = await frame.locator(selector).count().catch(() => 0);
      if (n > 0) return frame;
    }
    await page.waitForTimeout(300);
  }
  throw new Error(`no frame with ${selector} within ${timeoutMs} ms`);
}
