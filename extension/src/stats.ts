// Local statistics per model: how many completions were shown and accepted, and how long
// they took as the user saw them. Kept in the extension's global state across sessions.
import type { BackendModelStats, UsageSummary } from '../../common/webview';

export interface ModelUsage {
  shown: number;
  accepted: number;
  /** Recent end-to-end latencies in ms (request sent to answer received), newest last. */
  latencies: number[];
}

const MAX_LATENCIES = 200;

export class UsageStats {
  private perModel: Record<string, ModelUsage> = {};
  private readonly shownIds = new Set<string>();

  /** Restores from what `toJSON` wrote; anything malformed starts empty. */
  static fromJSON(value: unknown): UsageStats {
    const stats = new UsageStats();
    if (typeof value !== 'object' || value === null) return stats;
    for (const [model, usage] of Object.entries(value as Record<string, unknown>)) {
      if (!isUsage(usage)) continue;
      stats.perModel[model] = { shown: usage.shown, accepted: usage.accepted, latencies: usage.latencies.slice(-MAX_LATENCIES) };
    }
    return stats;
  }

  toJSON(): Record<string, ModelUsage> {
    return this.perModel;
  }

  /** Counts a completion once per request id, however often VS Code asks to show it. */
  shown(model: string, requestId: string): void {
    if (this.shownIds.has(requestId)) return;
    this.shownIds.add(requestId);
    if (this.shownIds.size > 1000) this.shownIds.delete(this.shownIds.values().next().value as string);
    this.usage(model).shown++;
  }

  accepted(model: string): void {
    this.usage(model).accepted++;
  }

  latency(model: string, ms: number): void {
    const l = this.usage(model).latencies;
    l.push(Math.round(ms));
    if (l.length > MAX_LATENCIES) l.shift();
  }

  summary(): UsageSummary[] {
    return Object.entries(this.perModel).map(([model, u]) => ({
      model,
      shown: u.shown,
      accepted: u.accepted,
      acceptanceRate: u.shown > 0 ? Math.min(1, u.accepted / u.shown) : null,
      latencyP50Ms: percentile(u.latencies, 0.5),
      latencyP95Ms: percentile(u.latencies, 0.95),
    }));
  }

  clear(): void {
    this.perModel = {};
    this.shownIds.clear();
  }

  private usage(model: string): ModelUsage {
    return (this.perModel[model] ??= { shown: 0, accepted: 0, latencies: [] });
  }
}

export interface StatsPublisherDeps {
  stats: UsageStats;
  /** Persists the counts (the extension's global state). */
  save: (json: Record<string, ModelUsage>) => void;
  /** The backend's own counters per model ([] when it is not running or does not answer). */
  backendStats: () => Promise<BackendModelStats[]>;
  /** Shows both in the inspector. */
  show: (usage: UsageSummary[], backend: BackendModelStats[]) => void;
}

/**
 * Saves the counts and shows them in the inspector, at most once per `delayMs` however many
 * completions arrive (schedule), or at once (post, save).
 */
export class StatsPublisher {
  private timer: ReturnType<typeof setTimeout> | undefined;

  constructor(private readonly deps: StatsPublisherDeps, private readonly delayMs = 1000) {}

  schedule(): void {
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.save();
      void this.post();
    }, this.delayMs);
  }

  async post(): Promise<void> {
    const backend = await this.deps.backendStats();
    this.deps.show(this.deps.stats.summary(), backend);
  }

  save(): void {
    this.deps.save(this.deps.stats.toJSON());
  }

  /** Stops the timer and saves what is counted. */
  dispose(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.save();
  }
}

export function percentile(values: number[], p: number): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1));
  return sorted[i]!;
}

function isUsage(v: unknown): v is ModelUsage {
  if (typeof v !== 'object' || v === null) return false;
  const u = v as Record<string, unknown>;
  return Number.isFinite(u.shown) && Number.isFinite(u.accepted) && Array.isArray(u.latencies) && u.latencies.every((x) => Number.isFinite(x));
}
