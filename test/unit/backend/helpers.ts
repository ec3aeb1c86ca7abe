// Shared paths and fixtures for the backend tests.
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { SpecialIds } from '../../../backend/src/engine/modelFolder';

export const REPO = path.resolve(__dirname, '..', '..', '..');
export const MODELS = path.join(REPO, 'models');
export const TINY = path.join(MODELS, 'tiny-test');

export const SPECIAL: SpecialIds = { eot: 0, pad: 1, fim_prefix: 2, fim_suffix: 3, fim_middle: 4, file_sep: 5 };

/** One token per character (id = code + 10), so budgets in tests are easy to count. */
export const charEncoder = { encode: (s: string) => Array.from(s, (c) => c.codePointAt(0)! + 10) };

export function tempDir(prefix = 'vffn-test-'): string {
  return mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** Copies a model folder into a fresh models dir; returns that dir and the copied folder. */
export function copyModel(src: string, name = path.basename(src)): { modelsDir: string; dir: string; cleanup: () => void } {
  const modelsDir = tempDir('vffn-models-');
  const dir = path.join(modelsDir, name);
  cpSync(src, dir, { recursive: true });
  return { modelsDir, dir, cleanup: () => rmSync(modelsDir, { recursive: true, force: true }) };
}
