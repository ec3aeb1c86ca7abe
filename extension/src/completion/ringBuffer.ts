// Chunks of recently edited or visited code, sent to the backend as extra context.
// Near-duplicates are evicted (a newer chunk replaces an older one that is mostly the same
// lines), as llama.vscode does, so typing in one place does not fill the buffer with copies.

export interface Chunk {
  uri: string;
  text: string;
  /** Trimmed non-empty lines, kept for the similarity test. */
  lines: string[];
}

export interface RingBufferOptions {
  capacity: number;
  /** Line-set similarity (0..1) at or above which two chunks count as the same. */
  duplicateThreshold: number;
}

export class ChunkRing {
  private chunks: Chunk[] = [];

  constructor(private readonly options: RingBufferOptions) {}

  get size(): number {
    return this.chunks.length;
  }

  /** Adds a chunk as the most recent one. Returns false when the text is too small to be useful. */
  add(uri: string, text: string): boolean {
    const lines = meaningfulLines(text);
    if (lines.length < 3) return false;
    this.chunks = this.chunks.filter((c) => similarity(c.lines, lines) < this.options.duplicateThreshold);
    this.chunks.push({ uri, text, lines });
    while (this.chunks.length > this.options.capacity) this.chunks.shift();
    return true;
  }

  /**
   * The most recent chunks first, within a character budget, leaving out chunks of
   * `excludeUri` (the document being completed: its text is already in prefix and suffix).
   */
  pick(maxChars: number, excludeUri?: string): { uri: string; text: string }[] {
    const out: { uri: string; text: string }[] = [];
    let used = 0;
    for (let i = this.chunks.length - 1; i >= 0; i--) {
      const c = this.chunks[i]!;
      if (c.uri === excludeUri) continue;
      if (used + c.text.length > maxChars) continue;
      used += c.text.length;
      out.push({ uri: c.uri, text: c.text });
    }
    return out;
  }

  clear(): void {
    this.chunks = [];
  }
}

/** Jaccard similarity of two line sets. */
export function similarity(a: string[], b: string[]): number {
  if (a.length === 0 && b.length === 0) return 1;
  const sa = new Set(a);
  const sb = new Set(b);
  let common = 0;
  for (const line of sa) if (sb.has(line)) common++;
  return common / (sa.size + sb.size - common);
}

function meaningfulLines(text: string): string[] {
  return text.split('\n').map((l) => l.trim()).filter((l) => l.length > 0);
}

/** The lines around `line` (0-based), `size` lines in all, clamped to the document. */
export function chunkAround(lines: readonly string[], line: number, size: number): string {
  const start = Math.max(0, Math.min(line - Math.floor(size / 2), lines.length - size));
  return lines.slice(start, start + size).join('\n');
}
