// Small JSON files in the user's cache dir (provider calibration, verified model files).
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

/** The OS user cache dir for this app: $VFFN_CACHE_DIR, else $XDG_CACHE_HOME or ~/.cache, ~/Library/Caches, %LOCALAPPDATA%. */
export function userCacheDir(): string {
  if (process.env.VFFN_CACHE_DIR) return process.env.VFFN_CACHE_DIR;
  const home = os.homedir();
  if (process.platform === 'win32') return path.join(process.env.LOCALAPPDATA ?? path.join(home, 'AppData', 'Local'), 'versatileffn');
  if (process.platform === 'darwin') return path.join(home, 'Library', 'Caches', 'versatileffn');
  return path.join(process.env.XDG_CACHE_HOME || path.join(home, '.cache'), 'versatileffn');
}

/** The JSON object in `file`; {} when it is missing or not an object (a cache is only ever a shortcut). */
export function readJsonObject<T>(file: string): Record<string, T> {
  try {
    const data = JSON.parse(readFileSync(file, 'utf8'));
    return data && typeof data === 'object' && !Array.isArray(data) ? data : {};
  } catch {
    return {};
  }
}

/** Writes a temp file then renames it (never half-written). Throws on failure. */
export function writeJsonAtomic(file: string, value: unknown): void {
  mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.${Date.now()}.tmp`;
  try {
    writeFileSync(tmp, JSON.stringify(value, null, 1) + '\n');
    renameSync(tmp, file);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
}
