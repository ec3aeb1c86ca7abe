// Cursor positions cut from real source files, for the benchmarks (CPU bench and GPU bench).
// Deterministic: the same files, seed and count give the same samples.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { seededRng } from '../engine/generator';

/**
 * A cursor mid-line in a real file, as the user meets it while writing that line: `prefix` is the
 * text before the cursor, `unwritten` the rest of the line (not typed yet), `suffix` the text after
 * the line (from its newline on), which stays the same as the user types.
 */
export interface Sample { file: string; prefix: string; unwritten: string; suffix: string; }

/** The sample after the user typed the next `n` characters of the line: the prefix grows, the suffix does not change. */
export function typed(s: Sample, n: number): { prefix: string; suffix: string } {
  return { prefix: s.prefix + s.unwritten.slice(0, n), suffix: s.suffix };
}

const SOURCE_FILE = /\.(ts|js|py|mjs|cjs)$/;
const MAX_FILE_BYTES = 2_000_000;

/** Source files (sorted, not recursive) directly under `dirs` of `root` with at least `minBytes`. */
export function sourceFiles(root: string, dirs: readonly string[], minBytes: number): string[] {
  const files: string[] = [];
  for (const d of dirs) {
    let names: string[];
    try {
      names = readdirSync(path.join(root, d)).sort();
    } catch {
      continue;
    }
    for (const n of names) {
      if (!SOURCE_FILE.test(n) || n.endsWith('.d.ts') || n.endsWith('.min.js')) continue;
      const stat = statSync(path.join(root, d, n));
      if (stat.isFile() && stat.size >= minBytes && stat.size < MAX_FILE_BYTES) files.push(path.join(root, d, n));
    }
  }
  if (files.length === 0) throw new Error(`no source files of at least ${minBytes} bytes under ${root} (${dirs.join(', ')})`);
  return files;
}

/** `count` mid-line cursor positions, cycling through `files`. */
export function pickSamples(files: readonly string[], count: number, seed: number): Sample[] {
  const rng = seededRng(seed);
  const samples: Sample[] = [];
  for (let i = 0; samples.length < count && i < count * 20; i++) {
    const file = files[i % files.length];
    const text = readFileSync(file, 'utf8');
    const lines = text.split('\n');
    // A line in the back half (plenty of context before it) with code on it; the cursor goes mid-line.
    const lineNo = Math.floor(lines.length / 2 + rng.next() * (lines.length / 2 - 1));
    const line = lines[lineNo] ?? '';
    const code = line.trimStart();
    if (code.length < 12) continue;
    const indent = line.length - code.length;
    const col = indent + Math.max(4, Math.floor(code.length * (0.3 + 0.4 * rng.next())));
    const offset = lines.slice(0, lineNo).reduce((n, l) => n + l.length + 1, 0) + col;
    const lineEnd = offset + (line.length - col);
    samples.push({ file, prefix: text.slice(0, offset), unwritten: text.slice(offset, lineEnd), suffix: text.slice(lineEnd) });
  }
  return samples;
}
