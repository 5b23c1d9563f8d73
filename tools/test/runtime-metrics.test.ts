import test from "ava";
import { Registry, collectDefaultMetrics } from "prom-client";
import { describeGc, describeLoop, parseRuntime, runtimePhase } from "../bench/runtime-metrics.ts";

const scrape = (minor: { count: number; sum: number; le10: number; le100: number }, p99: number, max: number) => `
# HELP nodejs_gc_duration_seconds Garbage collection duration by kind, one of major, minor, incremental or weakcb.
# TYPE nodejs_gc_duration_seconds histogram
nodejs_gc_duration_seconds_bucket{le="0.001",kind="minor"} 0
nodejs_gc_duration_seconds_bucket{le="0.01",kind="minor"} ${minor.le10}
nodejs_gc_duration_seconds_bucket{le="0.1",kind="minor"} ${minor.le100}
nodejs_gc_duration_seconds_bucket{le="+Inf",kind="minor"} ${minor.count}
nodejs_gc_duration_seconds_sum{kind="minor"} ${minor.sum}
nodejs_gc_duration_seconds_count{kind="minor"} ${minor.count}
nodejs_gc_duration_seconds_bucket{le="0.01",kind="major"} 1
nodejs_gc_duration_seconds_bucket{le="0.1",kind="major"} 1
nodejs_gc_duration_seconds_sum{kind="major"} 0.004
nodejs_gc_duration_seconds_count{kind="major"} 1
nodejs_eventloop_lag_p99_seconds ${p99}
nodejs_eventloop_lag_max_seconds ${max}
`;

test("a phase is the difference of two scrapes: pauses by kind, and how many were long", (t) => {
  const before = parseRuntime(scrape({ count: 10, sum: 0.05, le10: 10, le100: 10 }, 0.01, 0.02));
  const after = parseRuntime(scrape({ count: 40, sum: 0.75, le10: 20, le100: 38 }, 0.12, 0.45));
  const phase = runtimePhase(before, after);
  // Major did not run in between: left out.
  t.deepEqual(phase.gc, { minor: { count: 30, totalMs: 700, over10ms: 20, over100ms: 2 } });
  t.is(Math.round(phase.loopP99Ms!), 120);
  t.is(Math.round(phase.loopMaxMs!), 450);
  t.is(describeGc(phase), "minor 30: 700 ms, 20 > 10 ms, 2 > 100 ms");
  t.is(describeGc(undefined), "-");
  t.is(describeLoop(phase), "120.0 / 450.0");
  t.is(describeLoop(undefined), "-");
});

test("parses what prom-client's default metrics serve", async (t) => {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  // Something for the young generation to collect, and time for the GC observer to report it.
  let keep: unknown[] = [];
  for (let i = 0; i < 200_000; i++) keep.push({ i });
  keep = [];
  await new Promise((resolve) => setTimeout(resolve, 50));
  const snapshot = parseRuntime(await registry.metrics());
  t.true((snapshot.gc["minor"]?.count ?? 0) > 0, JSON.stringify(snapshot));
  t.true(snapshot.gc["minor"]!.seconds > 0);
  t.not(snapshot.loopP99Ms, undefined);
  t.is(keep.length, 0);
});
