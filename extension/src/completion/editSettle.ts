// When a file's edits have paused: its chunk for the recent-context ring is taken then (not at every
// keystroke). Leaving the file counts as a pause too, so that the chunk is in the ring before the
// cursor rests in the next file and its prompt is read ahead: a chunk that landed after that read
// (the settle timer firing a second later) would change the prompt's start and waste the read.
export class EditSettler<T> {
  private readonly pending = new Map<string, { timer: NodeJS.Timeout; value: T }>();

  constructor(private readonly settleMs: number, private readonly settled: (key: string, value: T) => void) {}

  /** An edit in `key`: `settled` runs settleMs after the last one, with the last value. */
  edited(key: string, value: T): void {
    const before = this.pending.get(key);
    if (before) clearTimeout(before.timer);
    const timer = setTimeout(() => this.fire(key), this.settleMs);
    this.pending.set(key, { timer, value });
  }

  /** Settles every file with pending edits except `key` (the one the user is now in) at once. */
  settleAllBut(key: string): void {
    for (const other of [...this.pending.keys()]) if (other !== key) this.fire(other);
  }

  dispose(): void {
    for (const { timer } of this.pending.values()) clearTimeout(timer);
    this.pending.clear();
  }

  private fire(key: string): void {
    const entry = this.pending.get(key);
    if (!entry) return;
    clearTimeout(entry.timer);
    this.pending.delete(key);
    this.settled(key, entry.value);
  }
}
