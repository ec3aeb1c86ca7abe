// Every setting the extension reads, typed, in one place. Other modules get a Config
// snapshot and never call getConfiguration themselves.
import * as vscode from 'vscode';
import type { BackendInitOptions, ProviderPreference } from '../../common/protocol';
import { isProviderPreference } from '../../common/vocabulary';

export const SECTION = 'versatileffn';

/** `versatileffn.multiline`: single line when code follows the cursor (auto), or always one shape. */
export type MultilineMode = 'auto' | 'always' | 'never';

export interface Config {
  enabled: boolean;
  /** Per-language switch; the "*" key is the default for languages not listed. */
  languages: Record<string, boolean>;
  modelDirs: string[];
  defaultModel: string | null;
  provider: ProviderPreference;
  threads: number;
  debounceMs: number;
  maxTokens: number;
  maxTimeMs: number;
  temperature: number;
  confidenceCutoff: number;
  multiline: MultilineMode;
  prefixLines: number;
  suffixLines: number;
  maxFileSizeKb: number;
  contextChunks: { enabled: boolean; count: number; lines: number; maxChars: number };
  cacheSize: number;
  maxCrashes: number;
  tintAccepted: boolean;
  /** Read the prompt at the cursor while it rests (completion/prefill.ts). */
  prefillOnRest: boolean;
}

/** Settings the running backend cannot pick up: changing one restarts it. */
export const RESTART_SETTINGS = ['modelDirs', 'threads'] as const;

export function readConfig(): Config {
  const c = vscode.workspace.getConfiguration(SECTION);
  const num = (key: string, fallback: number, min: number, max: number): number => {
    const v = c.get<number>(key, fallback);
    return typeof v === 'number' && Number.isFinite(v) ? Math.min(max, Math.max(min, v)) : fallback;
  };
  const provider = c.get<string>('provider', 'auto');
  const multiline = c.get<string>('multiline', 'auto');
  const defaultModel = c.get<string>('defaultModel', '').trim();
  return {
    enabled: c.get<boolean>('enable', true),
    languages: { '*': true, ...c.get<Record<string, boolean>>('languages', {}) },
    modelDirs: c.get<string[]>('modelDirs', []).filter((d) => typeof d === 'string' && d.trim().length > 0),
    defaultModel: defaultModel.length > 0 ? defaultModel : null,
    provider: isProviderPreference(provider) ? provider : 'auto',
    threads: num('threads', 0, 0, 256),
    debounceMs: num('debounceMs', 200, 0, 5000),
    maxTokens: num('maxTokens', 64, 1, 1024),
    maxTimeMs: num('maxTimeMs', 1000, 50, 30000),
    temperature: num('temperature', 0, 0, 2),
    confidenceCutoff: num('confidenceCutoff', 0, 0, 1),
    multiline: (['auto', 'always', 'never'].includes(multiline) ? multiline : 'auto') as MultilineMode,
    prefixLines: num('context.prefixLines', 256, 1, 5000),
    suffixLines: num('context.suffixLines', 64, 0, 5000),
    maxFileSizeKb: num('maxFileSizeKb', 1024, 1, 102400),
    contextChunks: {
      enabled: c.get<boolean>('context.recentChunks', true),
      count: num('context.recentChunkCount', 16, 1, 256),
      lines: num('context.recentChunkLines', 32, 4, 512),
      maxChars: num('context.recentChunkChars', 4096, 0, 100000),
    },
    cacheSize: num('cacheSize', 250, 1, 100000),
    maxCrashes: num('backend.maxCrashes', 5, 1, 100),
    tintAccepted: c.get<boolean>('tintAccepted', false),
    prefillOnRest: c.get<boolean>('prefillOnRest', true),
  };
}

/** Whether completions are on for this language, by the `languages` map. */
export function languageEnabled(config: Config, languageId: string): boolean {
  return config.languages[languageId] ?? config.languages['*'] ?? true;
}

export function needsRestart(e: vscode.ConfigurationChangeEvent): boolean {
  return RESTART_SETTINGS.some((key) => e.affectsConfiguration(`${SECTION}.${key}`));
}

/** What changed: the settings before and after, and whether the backend must restart to apply them. */
export interface ConfigChange {
  before: Config;
  after: Config;
  restart: boolean;
}

/** The current settings, re-read when one of the extension's settings changes. */
export class ConfigWatcher {
  private cfg: Config = readConfig();

  get current(): Config {
    return this.cfg;
  }

  /** Calls `onChange` after each change of a `versatileffn.*` setting (the snapshot is already updated). */
  listen(onChange: (change: ConfigChange) => void): vscode.Disposable {
    return vscode.workspace.onDidChangeConfiguration((e) => {
      if (!e.affectsConfiguration(SECTION)) return;
      const before = this.cfg;
      this.cfg = readConfig();
      onChange({ before, after: this.cfg, restart: needsRestart(e) });
    });
  }
}

/**
 * What the backend is started with: the configured model folders and the bundled ones, and the model
 * to load first: the one running before a restart, else the configured default, else the one last
 * chosen with Switch Model.
 */
export function backendInitOptions(
  config: Config, bundledModels: string, models: { running: string | null; lastChosen: string | undefined },
): BackendInitOptions {
  return {
    modelDirs: [...config.modelDirs.map(expandHome), bundledModels],
    defaultModel: models.running ?? config.defaultModel ?? models.lastChosen ?? null,
    provider: config.provider,
    threads: config.threads,
  };
}

/** `~/models` → `$HOME/models` (the settings take folders as typed). */
export function expandHome(dir: string): string {
  const home = process.env.HOME ?? process.env.USERPROFILE;
  return home && dir.startsWith('~') ? home + dir.slice(1) : dir;
}
