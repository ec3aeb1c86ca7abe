// The text around the cursor that a completion request carries. Used by the inline provider and
// by Compare Models, so both send the same prefix and suffix.
import * as vscode from 'vscode';
import type { Config } from '../config';

/** Hard caps on what is sent, whatever the line limits say (one 100k-character line…). */
const MAX_PREFIX_CHARS = 16_000;
const MAX_SUFFIX_CHARS = 4_000;

/** Prefix and suffix around the cursor, limited in lines and characters. */
export function textAround(document: vscode.TextDocument, position: vscode.Position, config: Config) {
  const firstLine = Math.max(0, position.line - config.prefixLines);
  const lastLine = Math.min(document.lineCount - 1, position.line + config.suffixLines);
  const start = new vscode.Position(firstLine, 0);
  const whole = document.getText(new vscode.Range(start, position));
  const prefix = whole.slice(-MAX_PREFIX_CHARS);
  // The prompt's cut is anchored to the document (CompleteParams.prefixOffset), not to this window.
  const prefixOffset = document.offsetAt(start) + whole.length - prefix.length;
  const suffix = document.getText(new vscode.Range(position, document.lineAt(lastLine).range.end)).slice(0, MAX_SUFFIX_CHARS);
  const line = document.lineAt(position.line).text;
  return { prefix, prefixOffset, suffix, linePrefix: line.slice(0, position.character), lineSuffix: line.slice(position.character) };
}
