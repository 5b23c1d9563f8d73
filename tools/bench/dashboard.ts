/**
 * `npm run bench:dashboard`: the jobs page's first load with a cold cache,
 * in Debian's Chromium (playwright-core) against an API process serving the
 * built app at `/` on loopback, the way web/test/dashboard.test.ts loads it
 * (which checks what the page shows, not how fast). Target: the job list (its
 * empty state) is on screen at most 1 s after the navigation starts, as the
 * browser clocks it (the app's "jobs-list-shown" performance mark).
 *
 * Each load is a fresh browser context (no cache, its own sessionStorage),
 * already signed in. Baseline, measured in the same run and alternated with
 * the page: a fresh context loading GET /openapi.json from the same server
 * (a document with no script), until its load event: what the browser and
 * the connection cost before any of the app's work. BENCH_LOADS (default 20)
 * loads of each.
 */
import { readInt } from "@stockroom/common";
import { connectNats } from "@stockroom/common/nats";
import { startTestApi } from "@stockroom/common/testing";
import { bulkModule, DEFAULT_QUEUE } from "@stockroom/bulk";
import { catalogModule } from "@stockroom/catalog";
import { launchChromium, requireChromium } from "../chromium.ts";
import { buildWeb, WEB_DIST } from "../web-build.ts";
import { median, percentile, round, table, writeResults } from "./stats.ts";

const LOADS = readInt(process.env, "BENCH_LOADS", 20, 3, 1_000);
const TARGET_MS = 1_000;
// First, so that a machine without Chromium is told what to install before anything starts.
try {
  requireChromium();
} catch (error) {
  console.error((error as Error).message);
  process.exit(1);
}

buildWeb({ quiet: true });
const nats = await connectNats({ servers: process.env["NATS_URL"] ?? "127.0.0.1:4222", name: "bench-dashboard" });
const suffix = Math.random().toString(36).slice(2, 8);
const queue = { ...DEFAULT_QUEUE, stream: `BENCH_WEB_${suffix}`, subjectPrefix: `bench_${suffix}.web.chunk` };
const api = await startTestApi("bench_dashboard", (db) => [catalogModule(db), bulkModule(db, { nats, queue })], {
  config: { webDir: WEB_DIST },
});
const browser = await launchChromium();

/** load opens url in a fresh context and returns how long after the navigation's start `until` happened, in ms. */
async function load(url: string, until: "app" | "document"): Promise<number> {
  const context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
  try {
    await context.addInitScript((key) => sessionStorage.setItem("stockroom.apiKey", key), api.merchantA.apiKey);
    const page = await context.newPage();
    await page.goto(url, { waitUntil: "load" });
    if (until === "document") {
      return await page.evaluate(() => (performance.getEntriesByType("navigation")[0] as PerformanceNavigationTiming).loadEventEnd);
    }
    await page.getByText("No bulk job yet").waitFor();
    return await page.evaluate(() => performance.getEntriesByName("jobs-list-shown")[0]!.startTime);
  } finally {
    await context.close();
  }
}

const page: number[] = [];
const baseline: number[] = [];
try {
  await load(`${api.url}/#/jobs`, "app"); // the server's first answers (reading the built files) are not a first load's
  for (let i = 0; i < LOADS; i++) {
    baseline.push(await load(`${api.url}/openapi.json`, "document"));
    page.push(await load(`${api.url}/#/jobs`, "app"));
  }
} finally {
  await browser.close();
  await api.close();
  await nats.jsm.streams.delete(queue.stream).catch(() => {});
  await nats.close();
}

const summary = (ms: number[]) => {
  const sorted = [...ms].sort((a, b) => a - b);
  return { medianMs: round(median(sorted), 1), p99Ms: round(percentile(sorted, 99), 1), maxMs: round(sorted.at(-1)!, 1) };
};
const figures = { page: summary(page), baseline: summary(baseline) };
const ratio = round(figures.page.medianMs / figures.baseline.medianMs, 2);
const met = figures.page.p99Ms <= TARGET_MS;
console.log(
  `\njobs page first load, cold cache, ${LOADS} loads each (ms from the navigation's start)\n${table(
    ["load", "median", "p99", "max"],
    [
      ["jobs page: list shown", figures.page.medianMs, figures.page.p99Ms, figures.page.maxMs],
      ["baseline: /openapi.json loaded", figures.baseline.medianMs, figures.baseline.p99Ms, figures.baseline.maxMs],
    ],
  )}\n\npage / baseline at the median: ${ratio}x; target p99 ≤ ${TARGET_MS} ms: ${met ? "met" : "missed"}`,
);
console.log(`wrote ${writeResults("dashboard", { loads: LOADS, ...figures, ratio, targetMs: TARGET_MS, met })}`);
