/**
 * The SLA report: per merchant, over a time window, what the merchant got
 * against the SLOs of its tier (tools/observability/slo.json).
 *
 * - Bulk jobs, from bulk_jobs: items per second (all finished jobs' items
 *   over their summed time to complete, counted only from jobs of at least
 *   bulk_throughput_min_items items, where fixed costs no longer dominate)
 *   and time-to-complete percentiles (created → ended).
 * - Single edits and orders, from rpc_call_minutes, the per-minute statistics
 *   every API process records (services/common/src/observe/sla.ts): calls, p50 and
 *   p99 (from merged log-bucket histograms; at most 19% high, never low) and
 *   the server error rate (errors that are the service's fault).
 *
 * These are maintenance reads across all merchants (on Vitess, scatter
 * queries), for an operator, never on a request path.
 */
import type { Kysely } from "kysely";
import type { StockroomTables } from "../tables.ts";
import { parseBuckets, percentileMs, type Buckets } from "@stockroom/common/observe";

export interface TierSlo {
  single_edit_p99_ms: number;
  order_p99_ms: number;
  server_error_rate: number;
  bulk_items_per_second: number;
  bulk_completion_p99_seconds: number;
}

export interface SloTable {
  /** Jobs smaller than this are judged by completion time only. */
  bulk_throughput_min_items: number;
  groups: Record<string, { service: string; methods: string[] }>;
  tiers: Record<string, TierSlo>;
}

export interface CallFigures {
  calls: number;
  p50Ms: number | null;
  p99Ms: number | null;
  /** Server errors (INTERNAL, UNAVAILABLE, …) over calls. */
  serverErrorRate: number | null;
  /** Calls refused for the caller's fault (invalid, not found, conflicts, rate limits). */
  clientErrors: number;
}

export interface BulkFigures {
  jobs: number;
  /** Jobs that ended (succeeded, partially succeeded or failed) in the window. */
  finished: number;
  failed: number;
  items: number;
  itemsPerSecond: number | null;
  completionP50S: number | null;
  completionP99S: number | null;
}

export interface MerchantReport {
  merchantId: string;
  name: string;
  tier: string;
  bulk: BulkFigures;
  /** By SLO group (single_edit, order). */
  calls: Record<string, CallFigures>;
  /** Each SLO the merchant missed, e.g. "single_edit p99 132.5 ms > 100 ms". */
  breaches: string[];
}

export interface SlaReport {
  since: string;
  until: string;
  merchants: MerchantReport[];
}

/** buildSlaReport reads the window's jobs and call statistics and checks them against slo. */
export async function buildSlaReport(
  db: Kysely<StockroomTables>,
  window: { since: Date; until: Date },
  slo: SloTable,
  options: { merchantId?: string } = {},
): Promise<SlaReport> {
  let jobsQuery = db
    .selectFrom("bulk_jobs")
    .select(["merchant_id", "state", "total_items", "created_at", "ended_at"])
    .where("created_at", ">=", window.since)
    .where("created_at", "<", window.until)
    .where("dry_run", "=", false);
  let callsQuery = db
    .selectFrom("rpc_call_minutes")
    .select(["merchant_id", "method", "calls", "client_errors", "server_errors", "latency_buckets"])
    .where("minute_start", ">=", window.since)
    .where("minute_start", "<", window.until);
  if (options.merchantId) {
    jobsQuery = jobsQuery.where("merchant_id", "=", options.merchantId);
    callsQuery = callsQuery.where("merchant_id", "=", options.merchantId);
  }
  const [jobs, minutes] = await Promise.all([jobsQuery.execute(), callsQuery.execute()]);

  const groupOf = new Map<string, string>();
  for (const [group, g] of Object.entries(slo.groups)) for (const m of g.methods) groupOf.set(`${g.service}/${m}`, group);

  interface Acc {
    calls: number;
    clientErrors: number;
    serverErrors: number;
    buckets: Buckets;
  }
  const calls = new Map<string, Map<string, Acc>>();
  for (const row of minutes) {
    const group = groupOf.get(row.method);
    if (!group) continue;
    const byGroup = calls.get(row.merchant_id) ?? new Map<string, Acc>();
    calls.set(row.merchant_id, byGroup);
    const acc = byGroup.get(group) ?? { calls: 0, clientErrors: 0, serverErrors: 0, buckets: new Map() };
    byGroup.set(group, acc);
    acc.calls += Number(row.calls);
    acc.clientErrors += Number(row.client_errors);
    acc.serverErrors += Number(row.server_errors);
    parseBuckets(row.latency_buckets, acc.buckets);
  }
  const jobsOf = new Map<string, typeof jobs>();
  for (const j of jobs) jobsOf.set(j.merchant_id, [...(jobsOf.get(j.merchant_id) ?? []), j]);

  const ids = [...new Set([...calls.keys(), ...jobsOf.keys()])].sort();
  const merchants =
    ids.length === 0
      ? []
      : await db.selectFrom("merchants").select(["merchant_id", "name", "tier"]).where("merchant_id", "in", ids).execute();
  const info = new Map(merchants.map((m) => [m.merchant_id, m]));

  return {
    since: window.since.toISOString(),
    until: window.until.toISOString(),
    merchants: ids.map((merchantId) => {
      const tier = String(info.get(merchantId)?.tier ?? "standard");
      const target = slo.tiers[tier] ?? slo.tiers["standard"]!;
      const bulk = bulkFigures(jobsOf.get(merchantId) ?? [], slo.bulk_throughput_min_items);
      const byGroup: Record<string, CallFigures> = {};
      for (const group of Object.keys(slo.groups)) {
        const acc = calls.get(merchantId)?.get(group);
        byGroup[group] = {
          calls: acc?.calls ?? 0,
          p50Ms: acc ? round(percentileMs(acc.buckets, 0.5)) : null,
          p99Ms: acc ? round(percentileMs(acc.buckets, 0.99)) : null,
          serverErrorRate: acc && acc.calls > 0 ? acc.serverErrors / acc.calls : null,
          clientErrors: acc?.clientErrors ?? 0,
        };
      }
      return {
        merchantId,
        name: String(info.get(merchantId)?.name ?? ""),
        tier,
        bulk,
        calls: byGroup,
        breaches: breaches(bulk, byGroup, target),
      };
    }),
  };
}

function bulkFigures(
  jobs: { state: string; total_items: number | string; created_at: Date; ended_at: Date | null }[],
  minItems: number,
): BulkFigures {
  const ended = jobs.filter((j) => j.ended_at !== null && ["succeeded", "partially_succeeded", "failed"].includes(j.state));
  const seconds = ended.map((j) => Math.max(0.001, (j.ended_at!.getTime() - j.created_at.getTime()) / 1000)).sort((a, b) => a - b);
  const big = ended.filter((j) => Number(j.total_items) >= minItems);
  const bigItems = big.reduce((n, j) => n + Number(j.total_items), 0);
  const bigSeconds = big.reduce((n, j) => n + Math.max(0.001, (j.ended_at!.getTime() - j.created_at.getTime()) / 1000), 0);
  return {
    jobs: jobs.length,
    finished: ended.length,
    failed: ended.filter((j) => j.state === "failed").length,
    items: jobs.reduce((n, j) => n + Number(j.total_items), 0),
    itemsPerSecond: big.length > 0 ? Math.round(bigItems / bigSeconds) : null,
    completionP50S: round(nearestRank(seconds, 0.5)),
    completionP99S: round(nearestRank(seconds, 0.99)),
  };
}

function breaches(bulk: BulkFigures, calls: Record<string, CallFigures>, slo: TierSlo): string[] {
  const out: string[] = [];
  const p99Target: Record<string, number> = { single_edit: slo.single_edit_p99_ms, order: slo.order_p99_ms };
  for (const [group, c] of Object.entries(calls)) {
    const target = p99Target[group];
    if (target !== undefined && c.p99Ms !== null && c.p99Ms > target) out.push(`${group} p99 ${c.p99Ms} ms > ${target} ms`);
    if (c.serverErrorRate !== null && c.serverErrorRate > slo.server_error_rate) {
      out.push(`${group} server errors ${percent(c.serverErrorRate)} > ${percent(slo.server_error_rate)}`);
    }
  }
  if (bulk.itemsPerSecond !== null && bulk.itemsPerSecond < slo.bulk_items_per_second)
    out.push(`bulk ${bulk.itemsPerSecond} items/s < ${slo.bulk_items_per_second}`);
  if (bulk.completionP99S !== null && bulk.completionP99S > slo.bulk_completion_p99_seconds) {
    out.push(`bulk completion p99 ${bulk.completionP99S} s > ${slo.bulk_completion_p99_seconds} s`);
  }
  return out;
}

function nearestRank(sorted: readonly number[], p: number): number | undefined {
  return sorted.length === 0 ? undefined : sorted[Math.min(sorted.length, Math.max(1, Math.ceil(p * sorted.length))) - 1];
}

function round(n: number | undefined): number | null {
  return n === undefined ? null : Math.round(n * 10) / 10;
}

function percent(rate: number): string {
  return `${(rate * 100).toFixed(rate < 0.001 ? 3 : 2)}%`;
}

/** formatSlaTable renders the report as a fixed-width table, one line per merchant. */
export function formatSlaTable(report: SlaReport): string {
  const header = [
    "merchant",
    "tier",
    "jobs",
    "items",
    "items/s",
    "ttc p50 s",
    "ttc p99 s",
    "edits",
    "edit p50",
    "edit p99",
    "edit 5xx",
    "orders",
    "order p99",
    "order 5xx",
    "SLO",
  ];
  const dash = (v: number | null, suffix = "") => (v === null ? "-" : `${v}${suffix}`);
  const rate = (v: number | null) => (v === null ? "-" : percent(v));
  const rows = report.merchants.map((m) => {
    const e = m.calls["single_edit"];
    const o = m.calls["order"];
    return [
      m.name ? `${m.merchantId} ${m.name.slice(0, 20)}` : m.merchantId,
      m.tier,
      String(m.bulk.jobs),
      String(m.bulk.items),
      dash(m.bulk.itemsPerSecond),
      dash(m.bulk.completionP50S),
      dash(m.bulk.completionP99S),
      String(e?.calls ?? 0),
      dash(e?.p50Ms ?? null, " ms"),
      dash(e?.p99Ms ?? null, " ms"),
      rate(e?.serverErrorRate ?? null),
      String(o?.calls ?? 0),
      dash(o?.p99Ms ?? null, " ms"),
      rate(o?.serverErrorRate ?? null),
      m.breaches.length === 0 ? "met" : `MISSED: ${m.breaches.join("; ")}`,
    ];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join("  ");
  const missed = report.merchants.filter((m) => m.breaches.length > 0).length;
  return [
    `SLA report ${report.since} → ${report.until}: ${report.merchants.length} merchants, ${missed} missed an SLO`,
    "",
    line(header),
    ...rows.map(line),
  ].join("\n");
}

/** parseWhen reads "24h", "90m", "7d" (that long before now) or an ISO date. */
export function parseWhen(text: string, now = new Date()): Date {
  const m = /^(\d+(?:\.\d+)?)(s|m|h|d)$/.exec(text);
  if (m) return new Date(now.getTime() - Number(m[1]) * { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as "s"]);
  const date = new Date(text);
  if (Number.isNaN(date.getTime())) throw new Error(`"${text}" is neither a duration such as 24h, 90m or 7d nor a date`);
  return date;
}
