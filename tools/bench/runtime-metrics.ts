/**
 * What a server process's own runtime metrics (its /metrics, prom-client's
 * default metrics, as operators scrape them) say of a benchmark phase: its
 * garbage collection pauses by kind and its event-loop delay. A bench reads
 * a snapshot at each phase boundary; the difference of two snapshots is the
 * phase. The event-loop figures are the phase's own: prom-client resets its
 * delay histogram at each scrape.
 */

/** One scrape: per GC kind, pauses counted, their total and how many lasted over 10 and 100 ms; the event-loop delay since the last scrape. */
export interface RuntimeSnapshot {
  gc: Record<string, { count: number; seconds: number; over10ms: number; over100ms: number }>;
  loopP99Ms?: number;
  loopMaxMs?: number;
}

/** What a phase's pauses were: the difference of two snapshots' GC figures, and the later one's event-loop delay. */
export interface RuntimePhase {
  gc: Record<string, { count: number; totalMs: number; over10ms: number; over100ms: number }>;
  loopP99Ms?: number;
  loopMaxMs?: number;
}

/** readRuntime scrapes a /metrics URL; undefined when it cannot (the phase is then reported without them). */
export async function readRuntime(metricsUrl: string): Promise<RuntimeSnapshot | undefined> {
  let text: string;
  try {
    const response = await fetch(metricsUrl, { signal: AbortSignal.timeout(2000) });
    if (!response.ok) return undefined;
    text = await response.text();
  } catch {
    return undefined;
  }
  return parseRuntime(text);
}

/** parseRuntime reads the GC duration histogram and the event-loop delay gauges out of Prometheus text. */
export function parseRuntime(text: string): RuntimeSnapshot {
  const gc: RuntimeSnapshot["gc"] = {};
  const of = (kind: string) => (gc[kind] ??= { count: 0, seconds: 0, over10ms: 0, over100ms: 0 });
  const le = new Map<string, number>();
  let loopP99Ms: number | undefined;
  let loopMaxMs: number | undefined;
  for (const line of text.split("\n")) {
    const m = /^(\w+)(?:\{([^}]*)\})? (\S+)/.exec(line);
    if (!m) continue;
    const [, name, labels = "", raw] = m;
    const value = Number(raw);
    const label = (key: string) => new RegExp(`(?:^|,)${key}="([^"]*)"`).exec(labels)?.[1];
    if (name === "nodejs_eventloop_lag_p99_seconds") loopP99Ms = value * 1000;
    else if (name === "nodejs_eventloop_lag_max_seconds") loopMaxMs = value * 1000;
    else if (name?.startsWith("nodejs_gc_duration_seconds_")) {
      const kind = label("kind");
      if (!kind) continue;
      if (name.endsWith("_count")) of(kind).count = value;
      else if (name.endsWith("_sum")) of(kind).seconds = value;
      else if (name.endsWith("_bucket")) le.set(`${kind} ${label("le")}`, value);
    }
  }
  for (const [kind, g] of Object.entries(gc)) {
    g.over10ms = g.count - (le.get(`${kind} 0.01`) ?? g.count);
    g.over100ms = g.count - (le.get(`${kind} 0.1`) ?? g.count);
  }
  return { gc, loopP99Ms, loopMaxMs };
}

/** runtimePhase is what happened between two snapshots. */
export function runtimePhase(from: RuntimeSnapshot, to: RuntimeSnapshot): RuntimePhase {
  const gc: RuntimePhase["gc"] = {};
  for (const [kind, b] of Object.entries(to.gc)) {
    const a = from.gc[kind] ?? { count: 0, seconds: 0, over10ms: 0, over100ms: 0 };
    if (b.count === a.count) continue;
    gc[kind] = {
      count: b.count - a.count,
      totalMs: Math.round((b.seconds - a.seconds) * 1000),
      over10ms: b.over10ms - a.over10ms,
      over100ms: b.over100ms - a.over100ms,
    };
  }
  return { gc, loopP99Ms: to.loopP99Ms, loopMaxMs: to.loopMaxMs };
}

/** describeLoop is a phase's event-loop delay in a table cell: "p99 / max" in ms (prom-client samples it every 10 ms). */
export function describeLoop(phase: RuntimePhase | undefined): string {
  if (phase?.loopP99Ms === undefined) return "-";
  return `${phase.loopP99Ms.toFixed(1)} / ${(phase.loopMaxMs ?? 0).toFixed(1)}`;
}

/** describeGc is a phase's pauses in a table cell: "minor 96: 1,676 ms, 52 > 10 ms; major 7: 410 ms, 2 > 100 ms". */
export function describeGc(phase: RuntimePhase | undefined): string {
  if (!phase) return "-";
  const kinds = Object.entries(phase.gc).filter(([kind]) => kind === "minor" || kind === "major");
  if (kinds.length === 0) return "none";
  return kinds
    .map(([kind, g]) => `${kind} ${g.count}: ${g.totalMs.toLocaleString("en-US")} ms, ${g.over10ms} > 10 ms, ${g.over100ms} > 100 ms`)
    .join("; ");
}
