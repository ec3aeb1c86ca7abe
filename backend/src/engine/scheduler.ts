// One inference at a time, newest request first. A newer request with the same supersede key
// (completions for the same model) supersedes older ones: waiting ones end at once, a running
// one ends at its next token. Background jobs (reading a prompt ahead while the cursor rests) give
// way: they run only when no foreground job waits, a running one ends at its next check when any
// foreground job arrives, they supersede only older background jobs, and any newer job with their
// key supersedes them.

/** Cancellation seen by the engine; the server maps LSP cancellation tokens onto it. */
export interface CancelSignal {
  readonly cancelled: boolean;
}

export type EndReason = 'cancelled' | 'superseded' | null;

export interface JobControl {
  /** Why the job should stop now, or null to go on. Check after every await. */
  stopReason(): EndReason;
  readonly arrivedAt: number;
  readonly startedAt: number;
}

/** foreground: a request someone waits for; background: work ahead of need that must never delay one. */
export type Priority = 'foreground' | 'background';

interface Job<T> {
  key: string | null;
  priority: Priority;
  signal?: CancelSignal;
  superseded: boolean;
  arrivedAt: number;
  startedAt: number;
  run: (ctl: JobControl) => Promise<T>;
  ended: (why: Exclude<EndReason, null>, arrivedAt: number) => T;
  resolve: (v: T) => void;
  reject: (e: unknown) => void;
}

export class Scheduler {
  private readonly waiting: Job<unknown>[] = [];
  private running: Job<unknown> | null = null;
  private pumping = false;

  /**
   * Queues `run`. `ended` builds the result for a job that is cancelled or superseded before it starts.
   * `key` = null: never superseded.
   */
  submit<T>(
    key: string | null, signal: CancelSignal | undefined, run: (ctl: JobControl) => Promise<T>, ended: Job<T>['ended'],
    priority: Priority = 'foreground',
  ): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const job: Job<T> = { key, priority, signal, superseded: false, arrivedAt: performance.now(), startedAt: 0, run, ended, resolve, reject };
      if (key !== null) {
        const supersedes = (old: Job<unknown>) => old.key === key && (priority === 'foreground' || old.priority === 'background');
        if (this.running && supersedes(this.running)) this.running.superseded = true;
        for (const old of this.waiting) if (supersedes(old)) old.superseded = true;
      }
      // Whatever its key, a request someone waits for does not wait for work ahead of need.
      if (priority === 'foreground' && this.running?.priority === 'background') this.running.superseded = true;
      this.waiting.push(job as Job<unknown>);
      this.dropEnded();
      void this.pump();
    });
  }

  /** Ends waiting jobs whose signal was cancelled since (call when a cancellation arrives). */
  poke(): void {
    this.dropEnded();
  }

  /** Resolves waiting jobs that were superseded or cancelled, without running them. */
  private dropEnded(): void {
    for (let i = this.waiting.length - 1; i >= 0; i--) {
      const job = this.waiting[i];
      const why = job.superseded ? 'superseded' : job.signal?.cancelled ? 'cancelled' : null;
      if (why) {
        this.waiting.splice(i, 1);
        job.resolve(job.ended(why, job.arrivedAt));
      }
    }
  }

  /** Takes the newest foreground job, else the newest background one. */
  private next(): Job<unknown> | undefined {
    for (let i = this.waiting.length - 1; i >= 0; i--) {
      if (this.waiting[i].priority === 'foreground') return this.waiting.splice(i, 1)[0];
    }
    return this.waiting.pop();
  }

  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    try {
      for (;;) {
        this.dropEnded();
        const job = this.next();
        if (!job) break;
        this.running = job;
        job.startedAt = performance.now();
        const ctl: JobControl = {
          stopReason: () => (job.superseded ? 'superseded' : job.signal?.cancelled ? 'cancelled' : null),
          arrivedAt: job.arrivedAt,
          startedAt: job.startedAt,
        };
        try {
          job.resolve(await job.run(ctl));
        } catch (e) {
          job.reject(e);
        }
        this.running = null;
      }
    } finally {
      this.pumping = false;
    }
  }
}
