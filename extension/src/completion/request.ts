// What a completion at a place sends, built in one place: the inline provider sends it, and the
// idle prefill (prefill.ts) sends the same params ahead of time, so the prompt it reads into the
// backend's KV cache is the prompt the completion will run.
import * as vscode from 'vscode';
import type { CompleteParams } from '../../../common/protocol';
import { languageEnabled, type Config } from '../config';
import type { ChunkRing } from './ringBuffer';
import { wantsMultiline } from './shape';
import { textAround } from './text';

/** Most tokens of a single-line completion (multi-line ones use versatileffn.maxTokens). */
export const SINGLE_LINE_MAX_TOKENS = 48;

export interface PlaceRequest {
  params: Omit<CompleteParams, 'requestId'>;
  multiline: boolean;
}

/** The request for a completion at `position` (everything but its id). */
export function requestAt(document: vscode.TextDocument, position: vscode.Position, config: Config, ring: ChunkRing): PlaceRequest {
  const { prefix, prefixOffset, suffix, linePrefix, lineSuffix } = textAround(document, position, config);
  const multiline = wantsMultiline(linePrefix, lineSuffix, config.multiline);
  const uri = document.uri.toString();
  const contextChunks = config.contextChunks.enabled ? ring.pick(config.contextChunks.maxChars, uri) : [];
  return {
    multiline,
    params: {
      uri,
      languageId: document.languageId,
      prefix,
      prefixOffset,
      suffix,
      contextChunks,
      // maxTokens also sets the prompt's budget in the backend (the context left after the new tokens).
      maxTokens: multiline ? config.maxTokens : Math.min(config.maxTokens, SINGLE_LINE_MAX_TOKENS),
      maxTimeMs: config.maxTimeMs,
      temperature: config.temperature,
      confidenceCutoff: config.confidenceCutoff,
    },
  };
}

/** Whether completions are on for this document: the switch, its language, the editor's own setting, its size. */
export function completionsAllowed(config: Config, document: vscode.TextDocument): boolean {
  if (!config.enabled || !languageEnabled(config, document.languageId)) return false;
  if (!vscode.workspace.getConfiguration('editor', document).get<boolean>('inlineSuggest.enabled', true)) return false;
  const chars = document.offsetAt(document.lineAt(document.lineCount - 1).range.end);
  return chars <= config.maxFileSizeKb * 1024;
}

/** Documents the user edits as files (not output panels, diff views, settings UIs…): where context is gathered and prompts are read ahead. */
export const FILE_SCHEMES: ReadonlySet<string> = new Set(['file', 'untitled', 'vscode-remote', 'vscode-userdata']);

/** A place in a document's text as it is now (its version), for "was this place asked about already". */
export function placeKey(document: vscode.TextDocument, position: vscode.Position): string {
  return `${document.uri.toString()}@${document.version}:${document.offsetAt(position)}`;
}
