/**
 * The alert rules and the Grafana dashboard in tools/observability/ are held
 * to what the processes really export: a live API process (catalog and
 * bulk, with a bulk worker sharing its registry, as `npm start` runs them)
 * is scraped over HTTP and every metric a rule or panel names must be in it.
 * The SLO rules must match slo.json. The rules' behaviour is unit-tested by
 * promtool (alerts.test.yml): which alert fires, when, with what labels.
 */
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import path from "node:path";
import test from "ava";
import { parse as parseYaml } from "yaml";
import { CatalogService } from "@stockroom/sdk/gen/stockroom/catalog/v1/catalog_service_pb.js";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { startApi, createMerchant } from "@stockroom/common/rpc";
import { parseApiConfig } from "@stockroom/common";
import { DEFAULT_RELAY, parseEventStreamConfig, registerRelayMetrics, startOutboxRelay } from "@stockroom/events";
import { ensureDatabase } from "@stockroom/common/db";
import { connectNats } from "@stockroom/common/nats";
import { testDatabaseUrl, dropTestDatabase } from "@stockroom/common/testing";
import { ordersModule } from "@stockroom/orders";
import { bulkMetrics, bulkModule, DEFAULT_QUEUE, startBulkWorker } from "@stockroom/bulk";
import { catalogModule } from "@stockroom/catalog";
import { notifyModule, parseNotifyConfig, registerDispatcherMetrics, startWebhookDispatcher } from "@stockroom/notify";
import { createLogger } from "@stockroom/common/observe";
import type { StockroomTables } from "../tables.ts";

const root = path.resolve(import.meta.dirname, "..", "..");
const dir = path.join(root, "tools", "observability");

interface Rule {
  alert: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

const rulesText = await readFile(path.join(dir, "alerts.rules.yml"), "utf8");
const rules: { groups: { name: string; rules: Rule[] }[] } = parseYaml(rulesText);
const dashboard = JSON.parse(await readFile(path.join(dir, "grafana-dashboard.json"), "utf8"));
const slo = JSON.parse(await readFile(path.join(dir, "slo.json"), "utf8"));

/** metricNames lists the metric names a PromQL expression reads (ours and Node's process metrics). */
function metricNames(expr: string): string[] {
  return [...new Set([...expr.matchAll(/\b((?:stockroom|process|nodejs)_[a-z0-9_]+)/g)].map((m) => m[1]!))];
}

/** exported scrapes a live process: sample names, plus every declared name (# TYPE) with its histogram series. */
let exported: Promise<Set<string>> | undefined;
function exportedNames(): Promise<Set<string>> {
  return (exported ??= (async () => {
    const url = testDatabaseUrl("observability");
    await ensureDatabase(url);
    const nats = await connectNats({ servers: "127.0.0.1:4222", name: "observability-test" });
    const config = { ...parseApiConfig({}), port: 0, metricsPort: 0, databaseUrl: url, logLevel: "silent" as const, slaFlushMs: 0 };
    const notify = parseNotifyConfig({});
    const api = await startApi<StockroomTables>({
      name: "test-observability",
      config,
      migrate: true,
      nats: nats.nc,
      modules: (db, { metrics }) => [
        catalogModule(db),
        bulkModule(db, { nats, metrics }),
        ordersModule(db, { metrics }),
        notifyModule(db, notify),
      ],
    });
    const suffix = randomBytes(4).toString("hex");
    const queue = { ...DEFAULT_QUEUE, stream: `BULK_OBSRULES_${suffix}`, subjectPrefix: `t_${suffix}.rules.chunk` };
    const worker = await startBulkWorker({
      db: api.db,
      nats,
      queue,
      log: createLogger("worker", "silent"),
      concurrency: 1,
      reconcileEveryMs: 0,
      metrics: api.metrics,
    });
    bulkMetrics(api.metrics.registry).workersDesired.set({ stream: queue.stream }, 1);
    // The webhook dispatcher, as dispatcher-main.ts and tools/start.ts run it, on this file's own event stream.
    const events = parseEventStreamConfig({ EVENTS_STREAM: `EVENTS_OBSRULES_${suffix}`, EVENTS_SUBJECT_PREFIX: `ev_${suffix}` });
    const dispatcher = await startWebhookDispatcher({
      db: api.db,
      nats,
      events,
      config: notify.dispatcher,
      allowPrivateTargets: true,
      log: createLogger("webhooks", "silent"),
    });
    registerDispatcherMetrics(api.metrics.registry, dispatcher);
    // The outbox relay, as relay-main.ts and tools/start.ts run it: its commit-to-publish histogram.
    const relay = await startOutboxRelay({
      db: api.db,
      nats,
      events,
      config: { ...DEFAULT_RELAY, pollMs: 10, pruneEveryMs: 0 },
      log: createLogger("relay", "silent"),
    });
    registerRelayMetrics(api.metrics.registry, relay);
    try {
      const merchant = await createMerchant(api.db, "Rules merchant");
      const catalog = createClient(
        CatalogService,
        createGrpcTransport({
          baseUrl: api.server.url,
          interceptors: [(next) => (req) => (req.header.set("authorization", `Bearer ${merchant.apiKey}`), next(req))],
        }),
      );
      await catalog.createProduct({ product: { sku: "R-1", title: "Rules", price: { currencyCode: "EUR", minorUnits: 100n }, stock: 1 } });
      for (let i = 0; i < 200 && relay.stats().published === 0; i++) await new Promise((r) => setTimeout(r, 50));
      const text = await (await fetch(`${api.metricsServer!.url}/metrics`)).text();
      const names = new Set<string>();
      for (const line of text.split("\n")) {
        const type = /^# TYPE (\S+) (\w+)/.exec(line);
        if (type) {
          names.add(type[1]!);
          if (type[2] === "histogram") for (const s of ["_bucket", "_sum", "_count"]) names.add(type[1]! + s);
        } else if (line && !line.startsWith("#")) {
          names.add(/^[^{\s]+/.exec(line)![0]);
        }
      }
      // Declared is not enough for what the rules lean on most: these carry samples.
      for (const must of [
        "stockroom_rpc_server_duration_seconds_bucket",
        "stockroom_jetstream_consumer_pending_messages",
        "stockroom_outbox_oldest_age_seconds",
        "stockroom_db_pool_queued_requests",
        "stockroom_bulk_worker_concurrency",
        "stockroom_outbox_relay_commit_to_publish_seconds_bucket",
      ]) {
        if (!text.split("\n").some((l) => l.startsWith(must))) throw new Error(`${must} has no sample`);
      }
      return names;
    } finally {
      await relay.stop();
      await dispatcher.stop();
      await worker.stop();
      await nats.jsm.streams.delete(queue.stream).catch(() => {});
      await nats.jsm.streams.delete(events.stream).catch(() => {});
      await api.stop();
      await nats.close();
      await dropTestDatabase(url);
    }
  })());
}

const activeRules = rules.groups.flatMap((g) => g.rules);
/** pending: names on `# pending:` lines: rules waiting for a metric that is not exported yet. */
const pending = [...rulesText.matchAll(/^# pending: (.+)$/gm)].flatMap((m) => m[1]!.split(/[\s,]+/).filter(Boolean));

test("every alert rule is well formed: a name, an expression, a severity, a summary, a valid `for`", (t) => {
  t.true(activeRules.length >= 8, `${activeRules.length} rules`);
  t.is(new Set(rules.groups.map((g) => g.name)).size, rules.groups.length, "group names are unique");
  for (const r of activeRules) {
    t.regex(r.alert, /^[A-Z][A-Za-z0-9]+$/, JSON.stringify(r));
    t.truthy(r.expr, r.alert);
    t.true(["info", "warning", "critical"].includes(r.labels?.["severity"] ?? ""), `${r.alert} severity`);
    t.truthy(r.annotations?.["summary"], `${r.alert} summary`);
    if (r.for !== undefined) t.regex(r.for, /^\d+[smh]$/, `${r.alert} for`);
    let depth = 0;
    for (const c of r.expr) {
      depth += c === "(" ? 1 : c === ")" ? -1 : 0;
      t.true(depth >= 0, `${r.alert}: unbalanced parentheses`);
    }
    t.is(depth, 0, `${r.alert}: unbalanced parentheses`);
    t.true(metricNames(r.expr).length > 0, `${r.alert} reads a metric`);
  }
});

test("the issue's alerts are there: queue lag growing 5 min, outbox older than 30 s, p99 over SLO per tier, worker count below desired, DLQ non-empty", (t) => {
  const byName = (name: string) => activeRules.filter((r) => r.alert === name);
  const lag = byName("BulkQueueLagGrowing")[0];
  t.is(lag?.for, "5m");
  t.true(metricNames(lag!.expr).includes("stockroom_jetstream_consumer_pending_messages"));
  t.regex(byName("OutboxEventsStale")[0]!.expr, /stockroom_outbox_oldest_age_seconds\) > 30$/);
  t.true(metricNames(byName("BulkWorkersBelowDesired")[0]!.expr).includes("stockroom_bulk_workers_desired"));
  const dlq = byName("WebhookDeadLetters")[0];
  t.true(
    metricNames(dlq!.expr).includes("stockroom_webhook_dead_letters_total"),
    "an alert fires when deliveries land in the dead-letter list",
  );
  t.deepEqual(pending, [], "no rule waits for a metric");
});

test("the SLO rules cover every tier and group with the thresholds and methods of slo.json", (t) => {
  const sloRules = activeRules.filter((r) => r.labels?.["slo"] && r.labels["tier"]);
  const covered = new Set<string>();
  for (const r of sloRules) {
    const tier = r.labels!["tier"]!;
    const target = r.labels!["slo"]!;
    const group = target.replace(/_p99_ms$/, "");
    const ms = slo.tiers[tier]?.[target];
    t.truthy(ms, `${r.alert}: slo.json has tiers.${tier}.${target}`);
    const threshold = Number(/>\s*([\d.]+)\s*$/.exec(r.expr)?.[1]);
    t.is(threshold * 1000, ms, `${r.alert} (${tier}) threshold`);
    t.true(r.expr.includes(`tier="${tier}"`), `${r.alert} selects tier ${tier}`);
    t.true(r.expr.includes(`service="${slo.groups[group].service}"`), `${r.alert} service`);
    t.true(r.expr.includes(`method=~"${slo.groups[group].methods.join("|")}"`), `${r.alert} methods`);
    covered.add(`${tier}/${group}`);
  }
  const expected = Object.keys(slo.tiers).flatMap((tier) => Object.keys(slo.groups).map((g) => `${tier}/${g}`));
  t.deepEqual([...covered].sort(), expected.sort());
});

test("the outbox's SLO rule reads the relay's commit-to-publish histogram with the threshold of slo.json", (t) => {
  const rule = activeRules.find((r) => r.labels?.["slo"] === "commit_to_publish_p99_ms");
  t.truthy(rule, "an alert on the commit-to-publish p99");
  t.regex(rule!.expr, /histogram_quantile\(0\.99, sum by \(le\) \(rate\(stockroom_outbox_relay_commit_to_publish_seconds_bucket\[/);
  t.is(Number(/>\s*([\d.]+)\s*$/.exec(rule!.expr)?.[1]) * 1000, slo.events.commit_to_publish_p99_ms);
  const panel = dashboard.panels.find((p: { title: string }) => /commit → publish/.test(p.title));
  t.truthy(panel, "a panel graphs it");
  t.true(panel.targets.some((q: { expr: string }) => q.expr.includes("stockroom_outbox_relay_commit_to_publish_seconds_bucket")));
  t.false(
    [...activeRules.map((r) => r.expr), ...dashboard.panels.flatMap((p: any) => (p.targets ?? []).map((q: any) => q.expr))].some((e) =>
      /commit_to_publish_seconds\{[^}]*quantile/.test(e),
    ),
    "nothing reads the old quantile gauge",
  );
});

test("every metric an alert rule reads is exported by a live process; pending ones are not (yet)", async (t) => {
  const names = await exportedNames();
  for (const r of activeRules) {
    t.deepEqual(
      metricNames(r.expr).filter((n) => !names.has(n)),
      [],
      `${r.alert} reads metrics nothing exports`,
    );
  }
  for (const p of pending) {
    t.false(names.has(p), `${p} is exported now: turn its pending rule in alerts.rules.yml into a real one`);
    t.false(
      activeRules.some((r) => r.expr.includes(p)),
      `${p} is pending, so no active rule may read it`,
    );
  }
});

test("the Grafana dashboard is well formed and every panel queries exported metrics", async (t) => {
  const names = await exportedNames();
  t.truthy(dashboard.uid);
  t.truthy(dashboard.title);
  t.true(dashboard.templating.list.some((v: { name: string; type: string }) => v.name === "datasource" && v.type === "datasource"));
  const panels: any[] = dashboard.panels;
  t.is(new Set(panels.map((p) => p.id)).size, panels.length, "panel ids are unique");
  const cells = new Set<string>();
  for (const p of panels) {
    const { x, y, w, h } = p.gridPos;
    t.true(x >= 0 && w > 0 && x + w <= 24, `${p.title} fits the 24-column grid`);
    for (let i = x; i < x + w; i++)
      for (let j = y; j < y + h; j++) {
        t.false(cells.has(`${i},${j}`), `${p.title} overlaps another panel`);
        cells.add(`${i},${j}`);
      }
    if (p.type === "row") continue;
    // biome-ignore lint/suspicious/noTemplateCurlyInString: "${datasource}" is a Grafana variable, not a template literal
    t.is(p.datasource?.uid, "${datasource}", `${p.title} uses the datasource variable`);
    t.true(p.targets.length > 0, `${p.title} has queries`);
    t.is(new Set(p.targets.map((q: { refId: string }) => q.refId)).size, p.targets.length, `${p.title} refIds`);
    for (const q of p.targets)
      t.deepEqual(
        metricNames(q.expr).filter((n) => !names.has(n)),
        [],
        `${p.title}: ${q.expr}`,
      );
  }
  const graphed = new Set(panels.flatMap((p) => (p.targets ?? []).flatMap((q: { expr: string }) => metricNames(q.expr))));
  for (const must of [
    "stockroom_rpc_server_duration_seconds_bucket",
    "stockroom_bulk_items_total",
    "stockroom_jetstream_consumer_pending_messages",
    "stockroom_outbox_oldest_age_seconds",
    "stockroom_orders_total",
    "stockroom_rate_limit_rejections_total",
    "stockroom_db_pool_queued_requests",
  ]) {
    t.true(graphed.has(must), `a panel shows ${must}`);
  }
});

/** promtoolPath finds promtool: PROMTOOL, then .stockroom/bin (where tools/bootstrap.mjs installs it), then PATH. */
function promtoolPath(): string | undefined {
  const candidates = [
    process.env["PROMTOOL"],
    path.join(root, ".stockroom", "bin", "promtool"),
    ...(process.env["PATH"] ?? "").split(path.delimiter).map((dir) => dir && path.join(dir, "promtool")),
  ];
  return candidates.find((c): c is string => !!c && existsSync(c));
}

const rulesTestFile = path.join(dir, "alerts.test.yml");

test("promtool: the rules check, and their unit tests (alerts.test.yml) pass", (t) => {
  const promtool = promtoolPath();
  if (!promtool) {
    t.fail(
      "promtool is missing: `npm test` installs it (tools/bootstrap.mjs, into .stockroom/bin); or set PROMTOOL, or put Debian's prometheus package's promtool on PATH",
    );
    return;
  }
  const check = spawnSync(promtool, ["check", "rules", path.join(dir, "alerts.rules.yml")], { encoding: "utf8" });
  t.is(check.status, 0, `promtool check rules:\n${check.stdout}${check.stderr}`);
  const run = spawnSync(promtool, ["test", "rules", rulesTestFile], { encoding: "utf8", cwd: dir });
  t.is(run.status, 0, `promtool test rules:\n${run.stdout}${run.stderr}`);
  t.regex(run.stdout, /SUCCESS/);
});

test("alerts.test.yml proves every alert of alerts.rules.yml fires (and the key ones stay quiet when they should)", async (t) => {
  const tests: {
    tests: { alert_rule_test?: { alertname: string; exp_alerts?: unknown[] }[] }[];
  } = parseYaml(await readFile(rulesTestFile, "utf8"));
  const cases = tests.tests.flatMap((g) => g.alert_rule_test ?? []);
  const fires = new Set(cases.filter((c) => (c.exp_alerts ?? []).length > 0).map((c) => c.alertname));
  const quiet = new Set(cases.filter((c) => (c.exp_alerts ?? []).length === 0).map((c) => c.alertname));
  const names = [...new Set(activeRules.map((r) => r.alert))];
  t.deepEqual(
    names.filter((n) => !fires.has(n)),
    [],
    "alerts no test makes fire",
  );
  t.deepEqual(
    cases.map((c) => c.alertname).filter((n) => !names.includes(n)),
    [],
    "tests of alerts that do not exist",
  );
  for (const n of ["BulkWorkersBelowDesired", "BulkQueueStalled", "WebhookDeadLetters", "OutboxPublishLatencyAboveSlo"]) {
    t.true(quiet.has(n), `${n} is also shown not to fire`);
  }
});
