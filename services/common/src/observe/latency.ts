/**
 * Latency percentiles over a sliding window, for the stats() getters of
 * background loops (relay, projector).
 */

/** LatencySummary describes the most recent samples of a latency. */
export interface LatencySummary {
  /** Samples the percentiles are computed from (at most the window's capacity). */
  samples: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

/** LatencyWindow keeps the last `capacity` samples: percentiles describe recent behaviour, not the process's lifetime. */
export interface LatencyWindow {
  add(ms: number): void;
  summary(): LatencySummary;
}

export function createLatencyWindow(capacity = 4096): LatencyWindow {
  const samples = new Float64Array(capacity);
  let count = 0;
  return {
    add(ms) {
      samples[count % capacity] = ms;
      count++;
    },
    summary() {
      const n = Math.min(count, capacity);
      if (n === 0) return { samples: 0, p50Ms: 0, p99Ms: 0, maxMs: 0 };
      const sorted = samples.slice(0, n).sort();
      const at = (p: number) => sorted[Math.min(n, Math.max(1, Math.ceil(p * n))) - 1]!;
      return { samples: n, p50Ms: at(0.5), p99Ms: at(0.99), maxMs: sorted[n - 1]! };
    },
  };
}
