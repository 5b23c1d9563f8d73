/**
 * The dispatcher's statements on webhook_deliveries.
 *
 * A pending row is due when next_attempt_at has passed. Claiming one sets
 * next_attempt_at to a lease (now + lease) and increments attempts in a
 * short transaction (FOR UPDATE SKIP LOCKED, so dispatcher processes never
 * claim the same row); the HTTP request runs after the commit, and its
 * outcome is written only if attempts is still what the claim set (a
 * fencing token: a sender whose lease ran out and whose row was claimed
 * again cannot overwrite the newer attempt). A sender that dies leaves the
 * row to be claimed again when the lease ends: deliveries are at least once.
 *
 * dueEndpoints and the sweep's endpoint list are the queries that span
 * merchants: they run against each shard target (forEachShard: on Vitess
 * each shard on its own, no scatter); every claim and settle names one
 * merchant.
 */
import { sql } from "kysely";
import { forEachShard, inTransaction } from "@stockroom/common/db";
import { deleteDeliveriesOf, findEndpoint, type DeliveryRow, type EndpointRow, type NotifyDb, type WebhookDeliveryRow } from "./store.ts";

/**
 * READ_COMMITTED keeps the claim's locking range read from taking gap locks,
 * which would block the intake inserting new deliveries of that endpoint.
 */
const READ_COMMITTED = { isolation: "read committed" } as const;

/** insertDeliveries records new deliveries; one whose (endpoint, event) exists is skipped, so a redelivered event adds nothing. */
export async function insertDeliveries(db: NotifyDb, rows: WebhookDeliveryRow[]): Promise<void> {
  if (rows.length === 0) return;
  await db
    .insertInto("webhook_deliveries")
    .values(rows)
    .onDuplicateKeyUpdate((eb) => ({ event_id: eb.ref("webhook_deliveries.event_id") }))
    .execute();
}

export interface DueEndpoint {
  merchantId: string;
  endpointId: string;
  /** When its oldest due delivery became due. */
  due: Date;
}

/**
 * dueEndpoints lists the endpoints with at least one due delivery, oldest
 * first. MariaDB and MySQL answer it with a loose index scan of
 * idx_webhook_deliveries_due: one probe per endpoint, however long an
 * endpoint's backlog is. The shards are asked at once (this is the
 * dispatcher's polling read) and their answers merged.
 */
export async function dueEndpoints(db: NotifyDb, now: Date): Promise<DueEndpoint[]> {
  const perShard = await forEachShard(db, (shardDb) => dueEndpointsOf(shardDb, now), { concurrency: 16 });
  return perShard.flat().sort((a, b) => a.due.getTime() - b.due.getTime());
}

async function dueEndpointsOf(db: NotifyDb, now: Date): Promise<DueEndpoint[]> {
  const rows = await db
    .selectFrom("webhook_deliveries")
    .select(["merchant_id", "endpoint_id", (eb) => eb.fn.min("next_attempt_at").as("due")])
    .where("state", "=", "pending")
    .where("next_attempt_at", "<=", now)
    .groupBy(["merchant_id", "endpoint_id"])
    .execute();
  return rows
    .map((r) => ({ merchantId: r.merchant_id, endpointId: r.endpoint_id, due: new Date(r.due) }))
    .sort((a, b) => a.due.getTime() - b.due.getTime());
}

export type ClaimedDelivery = Pick<
  DeliveryRow,
  "merchant_id" | "delivery_id" | "endpoint_id" | "event_id" | "event_type" | "payload" | "attempts" | "expires_at"
>;

export type Claim =
  /** The endpoint is gone; its deliveries are being deleted. */
  | { kind: "gone" }
  /** The endpoint is paused until then; nothing was claimed. */
  | { kind: "paused"; until: Date }
  | { kind: "claimed"; endpoint: EndpointRow; deliveries: ClaimedDelivery[] };

/**
 * claimDeliveries claims up to `limit(endpoint)` due deliveries of one
 * endpoint, oldest due first, leasing them until now + leaseMs. The limit
 * is computed from the endpoint row read in the same transaction (a
 * half-open endpoint gets a single probe).
 */
export async function claimDeliveries(
  db: NotifyDb,
  merchantId: string,
  endpointId: string,
  limit: (endpoint: EndpointRow) => number,
  now: Date,
  leaseMs: number,
): Promise<Claim> {
  return inTransaction(
    db,
    async (trx): Promise<Claim> => {
      const endpoint = await findEndpoint(trx, merchantId, endpointId);
      if (!endpoint) return { kind: "gone" } as const;
      if (endpoint.paused_until && endpoint.paused_until > now) return { kind: "paused", until: endpoint.paused_until } as const;
      const n = limit(endpoint);
      if (n <= 0) return { kind: "claimed", endpoint, deliveries: [] } as const;
      const rows = await trx
        .selectFrom("webhook_deliveries")
        .select(["merchant_id", "delivery_id", "endpoint_id", "event_id", "event_type", "payload", "attempts", "expires_at"])
        .where("merchant_id", "=", merchantId)
        .where("endpoint_id", "=", endpointId)
        .where("state", "=", "pending")
        .where("next_attempt_at", "<=", now)
        .orderBy("next_attempt_at")
        .limit(n)
        .forUpdate()
        .skipLocked()
        .execute();
      if (rows.length === 0) return { kind: "claimed", endpoint, deliveries: [] } as const;
      await trx
        .updateTable("webhook_deliveries")
        .set((eb) => ({ attempts: eb("attempts", "+", 1), next_attempt_at: new Date(now.getTime() + leaseMs) }))
        .where("merchant_id", "=", merchantId)
        .where(
          "delivery_id",
          "in",
          rows.map((r) => r.delivery_id),
        )
        .execute();
      return { kind: "claimed", endpoint, deliveries: rows.map((r) => ({ ...r, attempts: r.attempts + 1 })) } as const;
    },
    READ_COMMITTED,
  );
}

export interface AttemptOutcome {
  ok: boolean;
  /** The HTTP status; 0 when there was no answer. */
  status: number;
  error: string;
}

/**
 * settleDelivered records a successful attempt, and resets the endpoint's
 * failure count if it had one. Skipped if the row was claimed again since.
 */
export async function settleDelivered(
  db: NotifyDb,
  d: ClaimedDelivery,
  outcome: AttemptOutcome,
  now: Date,
  hadFailures: boolean,
): Promise<void> {
  await db
    .updateTable("webhook_deliveries")
    .set({ state: "delivered", next_attempt_at: now, last_attempt_at: now, last_status: outcome.status, last_error: "" })
    .where("merchant_id", "=", d.merchant_id)
    .where("delivery_id", "=", d.delivery_id)
    .where("state", "=", "pending")
    .where("attempts", "=", d.attempts)
    .execute();
  if (hadFailures) {
    await db
      .updateTable("webhook_endpoints")
      .set({ consecutive_failures: 0, paused_until: null })
      .where("merchant_id", "=", d.merchant_id)
      .where("endpoint_id", "=", d.endpoint_id)
      .execute();
  }
}

/**
 * settleFailed records a failed attempt: the delivery is retried at
 * retryAt, or becomes dead when that is past its expiry; the endpoint's
 * failure count grows and pause(failures) may pause it. It returns the
 * endpoint's pause, if any.
 */
export async function settleFailed(
  db: NotifyDb,
  d: ClaimedDelivery,
  outcome: AttemptOutcome,
  now: Date,
  retryAt: Date,
  pause: (failures: number) => number | undefined,
): Promise<Date | undefined> {
  const dead = retryAt > d.expires_at;
  return inTransaction(
    db,
    async (trx) => {
      await trx
        .updateTable("webhook_deliveries")
        .set({
          state: dead ? "dead" : "pending",
          next_attempt_at: dead ? now : retryAt,
          last_attempt_at: now,
          last_status: outcome.status,
          last_error: outcome.error.slice(0, 500),
        })
        .where("merchant_id", "=", d.merchant_id)
        .where("delivery_id", "=", d.delivery_id)
        .where("state", "=", "pending")
        .where("attempts", "=", d.attempts)
        .execute();
      const endpoint = await trx
        .selectFrom("webhook_endpoints")
        .select("consecutive_failures")
        .where("merchant_id", "=", d.merchant_id)
        .where("endpoint_id", "=", d.endpoint_id)
        .forUpdate()
        .executeTakeFirst();
      if (!endpoint) return undefined;
      const failures = endpoint.consecutive_failures + 1;
      const ms = pause(failures);
      const pausedUntil = ms === undefined ? null : new Date(now.getTime() + ms);
      await trx
        .updateTable("webhook_endpoints")
        .set({ consecutive_failures: failures, paused_until: pausedUntil })
        .where("merchant_id", "=", d.merchant_id)
        .where("endpoint_id", "=", d.endpoint_id)
        .execute();
      return pausedUntil ?? undefined;
    },
    READ_COMMITTED,
  );
}

/** endpointsWithDeliveries lists every (merchant, endpoint) that has delivery rows (a loose index scan). */
async function endpointsWithDeliveries(db: NotifyDb) {
  return db.selectFrom("webhook_deliveries").select(["merchant_id", "endpoint_id"]).distinct().execute();
}

/**
 * sweepDeliveries does the slow housekeeping, endpoint by endpoint (so each
 * statement names one merchant and uses idx_webhook_deliveries_due): the
 * pending deliveries of a failing endpoint (failingAfter failures in a row)
 * that are past their expiry and not being sent become dead letters, since
 * the endpoint's probes would otherwise reach them one by one; a healthy
 * endpoint's expired deliveries still get their attempt. Rows of deleted
 * endpoints go; delivered rows older than retention.deliveredMs and dead
 * ones older than retention.deadMs are deleted. It runs against each shard
 * target in turn (the endpoints found on a shard are its merchants').
 */
export async function sweepDeliveries(
  db: NotifyDb,
  now: Date,
  failingAfter: number,
  retention: { deliveredMs: number; deadMs: number },
  batch = 5000,
): Promise<{ expired: number; deleted: number }> {
  const perShard = await forEachShard(db, (shardDb) => sweepShard(shardDb, now, failingAfter, retention, batch));
  return perShard.reduce((sum, r) => ({ expired: sum.expired + r.expired, deleted: sum.deleted + r.deleted }), { expired: 0, deleted: 0 });
}

async function sweepShard(
  db: NotifyDb,
  now: Date,
  failingAfter: number,
  retention: { deliveredMs: number; deadMs: number },
  batch: number,
): Promise<{ expired: number; deleted: number }> {
  const totals = { expired: 0, deleted: 0 };
  for (const { merchant_id, endpoint_id } of await endpointsWithDeliveries(db)) {
    const endpoint = await db
      .selectFrom("webhook_endpoints")
      .select("consecutive_failures")
      .where("merchant_id", "=", merchant_id)
      .where("endpoint_id", "=", endpoint_id)
      .executeTakeFirst();
    if (!endpoint) {
      await deleteDeliveriesOf(db, merchant_id, endpoint_id, batch);
      continue;
    }
    if (endpoint.consecutive_failures >= failingAfter) {
      const expired = await db
        .updateTable("webhook_deliveries")
        .set({
          state: "dead",
          next_attempt_at: now,
          last_error: sql<string>`IF(attempts = 0, ${"expired while the endpoint was failing"}, last_error)`,
        })
        .where("merchant_id", "=", merchant_id)
        .where("endpoint_id", "=", endpoint_id)
        .where("state", "=", "pending")
        .where("next_attempt_at", "<=", now)
        .where("expires_at", "<", now)
        .executeTakeFirst();
      totals.expired += Number(expired.numUpdatedRows);
    }
    for (const [state, ms] of [
      ["delivered", retention.deliveredMs],
      ["dead", retention.deadMs],
    ] as const) {
      for (;;) {
        const result = await db
          .deleteFrom("webhook_deliveries")
          .where("merchant_id", "=", merchant_id)
          .where("endpoint_id", "=", endpoint_id)
          .where("state", "=", state)
          .where("next_attempt_at", "<", new Date(now.getTime() - ms))
          .limit(batch)
          .executeTakeFirst();
        const n = Number(result.numDeletedRows);
        totals.deleted += n;
        if (n < batch) break;
      }
    }
  }
  return totals;
}
