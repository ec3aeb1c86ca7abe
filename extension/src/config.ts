// Every setting the extension reads, typed, in one place. Other modules get a Config
// snapshot and never call getConfiguration themselves.
import * as vscode from 'vscode';
import type { ProviderPreference } from '../../common/protocol';
import type { MultilineMode } from './completion/shape';

export const SECTION = 'versatileffn';

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
    provider: (['auto', 'cpu', 'webgpu', 'cuda', 'dml', 'coreml'].includes(provider) ? provider : 'auto') as ProviderPreference,
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
  };
}

/** Whether completions are on for this language, by the `languages` map. */
export function languageEnabled(config: Config, languageId: string): boolean {
  return config.languages[languageId] ?? config.languages['*'] ?? true;
}

export function needsRestart(e: vscode.ConfigurationChangeEvent): boolean {
  return RESTART_SETTINGS.some((key) => e.affectsConfiguration(`${SECTION}.${key}`));
}
