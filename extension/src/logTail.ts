// The last lines the backend wrote to stderr, kept so that an error message can quote them.
export class LogTail {
  private lines: string[] = [];
  private partial = '';

  constructor(private readonly capacity: number) {}

  append(text: string): void {
    const parts = (this.partial + text).split(/\r?\n/);
    this.partial = parts.pop() ?? '';
    for (const line of parts) this.push(line);
  }

  /** The last `n` non-empty lines, oldest first (an unfinished line included). */
  last(n: number): string[] {
    const all = this.partial ? [...this.lines, this.partial] : this.lines;
    return all.filter((l) => l.trim().length > 0).slice(-n);
  }

  clear(): void {
    this.lines = [];
    this.partial = '';
  }

  private push(line: string): void {
    this.lines.push(line);
    if (this.lines.length > this.capacity) this.lines.splice(0, this.lines.length - this.capacity);
  }
}

/**
 * The line of a backend log that best says what went wrong: the last error message, not a
 * stack frame, not the extension's own lines; else the last line. Null when there is none.
 */
export function mostTellingLine(lines: readonly string[]): string | null {
  const candidates = lines.filter((l) => !l.includes('[extension]') && !/^\s+at /.test(l) && !/^Node\.js v\d/.test(l) && l.trim().length > 0);
  const error = [...candidates].reverse().find((l) => /error|cannot|failed|not found|missing/i.test(l));
  const line = error ?? candidates[candidates.length - 1];
  return line ? line.trim().slice(0, 300) : null;
}
