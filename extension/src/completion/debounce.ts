// Waiting before a request: long enough that typing a word does not start one request per
// key, short enough to feel instant. A cancellation (the user typed again) ends the wait.

/** The subset of vscode.CancellationToken this needs, so the logic runs outside VS Code. */
export interface CancelToken {
  readonly isCancellationRequested: boolean;
  onCancellationRequested(listener: () => unknown): { dispose(): unknown };
}

export interface DebounceInput {
  /** The user asked explicitly (Alt+\ / "Trigger Inline Suggestion"). */
  explicit: boolean;
  /** The answer is already in the cache. */
  cached: boolean;
  configuredMs: number;
}

export function debounceDelay(input: DebounceInput): number {
  if (input.explicit || input.cached) return 0;
  return Math.max(0, input.configuredMs);
}

/** Resolves true after `ms`, or false as soon as the token is cancelled. */
export function sleep(ms: number, token: CancelToken): Promise<boolean> {
  if (token.isCancellationRequested) return Promise.resolve(false);
  if (ms <= 0) return Promise.resolve(true);
  return new Promise((resolve) => {
    const sub = token.onCancellationRequested(() => {
      clearTimeout(timer);
      sub.dispose();
      resolve(false);
    });
    const timer = setTimeout(() => {
      sub.dispose();
      resolve(true);
    }, ms);
  });
}
