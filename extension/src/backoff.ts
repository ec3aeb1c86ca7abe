// When the backend dies: restart it after a growing delay, and give up once it has crashed
// too often within a window (a backend that cannot start would otherwise loop forever).

export interface BackoffOptions {
  baseMs: number;
  maxMs: number;
  /** Give up at this many crashes inside `windowMs`. */
  maxCrashes: number;
  windowMs: number;
}

export type CrashDecision =
  | { action: 'restart'; delayMs: number; crashesInWindow: number }
  | { action: 'giveUp'; crashesInWindow: number; windowMs: number };

export class CrashTracker {
  private crashes: number[] = [];

  constructor(private readonly options: BackoffOptions) {}

  /** Records a crash at `now` (ms) and says what to do about it. */
  record(now: number): CrashDecision {
    this.crashes = this.crashes.filter((t) => now - t < this.options.windowMs);
    this.crashes.push(now);
    const n = this.crashes.length;
    if (n >= this.options.maxCrashes) return { action: 'giveUp', crashesInWindow: n, windowMs: this.options.windowMs };
    const delayMs = Math.min(this.options.maxMs, this.options.baseMs * 2 ** (n - 1));
    return { action: 'restart', delayMs, crashesInWindow: n };
  }

  /** A manual restart or a long healthy run starts the count afresh. */
  reset(): void {
    this.crashes = [];
  }
}
