/**
 * Webhook tables and the repository functions of the API side (endpoints,
 * dead letters). The dispatcher's claim and settle statements are in
 * deliveries.ts. Every statement names one merchant, except the
 * dispatcher's scans for due work (see there).
 */
import path from "node:path";
import type { Kysely, Selectable, Transaction } from "kysely";
import { jsonColumn, type MigrationSet, type CommonTables } from "@stockroom/common/db";

/**
 * notifyMigrations is the folder of the webhook tables. They were created by
 * the catalog's set before they moved here: where kysely_migration_catalog
 * records them as applied, migrateToLatest hands the records over first, so
 * they never run twice. The names are the files' names without ".ts", as
 * Kysely records them.
 */
export const notifyMigrations: MigrationSet = {
  name: "notify",
  folder: path.join(import.meta.dirname, "..", "migrations"),
  adopts: [{ set: "catalog", migrations: ["2026_11_23_160000_create_webhook_endpoints", "2026_11_23_160100_create_webhook_deliveries"] }],
};

export interface WebhookEndpointRow {
  merchant_id: string;
  endpoint_id: string;
  url: string;
  description: string;
  /** JSON array of patterns. */
  event_types: string;
  secret: string;
  previous_secret: string | null;
  previous_secret_expires_at: Date | null;
  consecutive_failures: number;
  paused_until: Date | null;
  version: number;
  created_at: Date;
  updated_at: Date;
}

export type DeliveryState = "pending" | "delivered" | "dead";

export interface WebhookDeliveryRow {
  merchant_id: string;
  delivery_id: string;
  endpoint_id: string;
  event_id: string;
  event_type: string;
  /** The exact JSON body sent (and signed) on every attempt. */
  payload: string;
  state: DeliveryState;
  /** Attempts since creation or the last replay; also the claim's fencing token. */
  attempts: number;
  next_attempt_at: Date;
  expires_at: Date;
  last_attempt_at: Date | null;
  last_status: number;
  last_error: string;
  created_at: Date;
}

export interface NotifyTables extends CommonTables {
  webhook_endpoints: WebhookEndpointRow;
  webhook_deliveries: WebhookDeliveryRow;
}

export type NotifyDb = Kysely<NotifyTables>;
export type NotifyTx = Transaction<NotifyTables>;
export type EndpointRow = Selectable<WebhookEndpointRow>;
export type DeliveryRow = Selectable<WebhookDeliveryRow>;

/** patternsOf reads an endpoint's event_types column. */
export function patternsOf(row: Pick<EndpointRow, "event_types">): string[] {
  return jsonColumn<string[]>(row.event_types);
}

/** previousSecretValid tells whether an endpoint's rotated-out secret still signs at now. */
export function previousSecretValid(row: Pick<EndpointRow, "previous_secret" | "previous_secret_expires_at">, now: Date): boolean {
  return row.previous_secret !== null && row.previous_secret_expires_at !== null && row.previous_secret_expires_at > now;
}

export async function insertEndpoint(trx: NotifyTx, row: WebhookEndpointRow): Promise<void> {
  await trx.insertInto("webhook_endpoints").values(row).execute();
}

/** countEndpoints counts a merchant's endpoints after locking its merchant row, so concurrent creates respect the limit. */
export async function countEndpointsLocked(trx: NotifyTx, merchantId: string): Promise<number> {
  await trx.selectFrom("merchants").select("merchant_id").where("merchant_id", "=", merchantId).forUpdate().execute();
  const row = await trx
    .selectFrom("webhook_endpoints")
    .select((eb) => eb.fn.countAll<number>().as("n"))
    .where("merchant_id", "=", merchantId)
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

export async function findEndpoint(
  db: NotifyDb | NotifyTx,
  merchantId: string,
  endpointId: string,
  forUpdate = false,
): Promise<EndpointRow | undefined> {
  let q = db.selectFrom("webhook_endpoints").selectAll().where("merchant_id", "=", merchantId).where("endpoint_id", "=", endpointId);
  if (forUpdate) q = q.forUpdate();
  return q.executeTakeFirst();
}

/** listEndpoints reads one keyset page in id (creation) order. */
export async function listEndpoints(db: NotifyDb, merchantId: string, afterId: string | undefined, limit: number): Promise<EndpointRow[]> {
  let q = db.selectFrom("webhook_endpoints").selectAll().where("merchant_id", "=", merchantId);
  if (afterId !== undefined) q = q.where("endpoint_id", ">", afterId);
  return q.orderBy("endpoint_id").limit(limit).execute();
}

/** endpointFilters reads what the intake needs to route a merchant's event. */
export async function endpointFilters(db: NotifyDb, merchantId: string) {
  return db
    .selectFrom("webhook_endpoints")
    .select(["endpoint_id", "event_types", "created_at"])
    .where("merchant_id", "=", merchantId)
    .execute();
}

/**
 * deleteEndpoint removes the endpoint, then its deliveries in batches (a
 * dead endpoint may have a long backlog; one huge DELETE would hold locks
 * for long). A dispatcher that claimed some meanwhile finds no endpoint and
 * drops them.
 */
export async function deleteEndpoint(db: NotifyDb, merchantId: string, endpointId: string, batch = 5000): Promise<boolean> {
  const result = await db
    .deleteFrom("webhook_endpoints")
    .where("merchant_id", "=", merchantId)
    .where("endpoint_id", "=", endpointId)
    .executeTakeFirst();
  if (result.numDeletedRows === 0n) return false;
  await deleteDeliveriesOf(db, merchantId, endpointId, batch);
  return true;
}

export async function deleteDeliveriesOf(db: NotifyDb | NotifyTx, merchantId: string, endpointId: string, batch = 5000): Promise<void> {
  for (;;) {
    const result = await db
      .deleteFrom("webhook_deliveries")
      .where("merchant_id", "=", merchantId)
      .where("endpoint_id", "=", endpointId)
      .limit(batch)
      .executeTakeFirst();
    if (result.numDeletedRows < BigInt(batch)) return;
  }
}

/** setSecret replaces the secret; previous keeps signing until previousExpiresAt (none when null). */
export async function setSecret(
  trx: NotifyTx,
  merchantId: string,
  endpointId: string,
  secret: string,
  previous: { secret: string; expiresAt: Date } | null,
  now: Date,
): Promise<void> {
  await trx
    .updateTable("webhook_endpoints")
    .set((eb) => ({
      secret,
      previous_secret: previous?.secret ?? null,
      previous_secret_expires_at: previous?.expiresAt ?? null,
      version: eb("version", "+", 1),
      updated_at: now,
    }))
    .where("merchant_id", "=", merchantId)
    .where("endpoint_id", "=", endpointId)
    .execute();
}

/** unpauseEndpoints lifts the pause of one endpoint or all of a merchant's (failures stay counted: the next attempt is a single probe). */
export async function unpauseEndpoints(db: NotifyDb | NotifyTx, merchantId: string, endpointId?: string): Promise<void> {
  let q = db
    .updateTable("webhook_endpoints")
    .set({ paused_until: null })
    .where("merchant_id", "=", merchantId)
    .where("paused_until", "is not", null);
  if (endpointId !== undefined) q = q.where("endpoint_id", "=", endpointId);
  await q.execute();
}

export async function findDelivery(db: NotifyDb | NotifyTx, merchantId: string, deliveryId: string): Promise<DeliveryRow | undefined> {
  return db
    .selectFrom("webhook_deliveries")
    .selectAll()
    .where("merchant_id", "=", merchantId)
    .where("delivery_id", "=", deliveryId)
    .executeTakeFirst();
}

/** listDeadLetters reads one keyset page of dead deliveries, newest first. */
export async function listDeadLetters(
  db: NotifyDb,
  merchantId: string,
  query: { endpointId?: string; beforeId?: string; limit: number },
): Promise<DeliveryRow[]> {
  let q = db.selectFrom("webhook_deliveries").selectAll().where("merchant_id", "=", merchantId).where("state", "=", "dead");
  if (query.endpointId !== undefined) q = q.where("endpoint_id", "=", query.endpointId);
  if (query.beforeId !== undefined) q = q.where("delivery_id", "<", query.beforeId);
  return q.orderBy("delivery_id", "desc").limit(query.limit).execute();
}

/**
 * replayDead makes dead deliveries pending again with a fresh retry budget,
 * due at once: one (deliveryId) or all of a merchant's or an endpoint's,
 * in batches. It returns how many it replayed.
 */
export async function replayDead(
  db: NotifyDb | NotifyTx,
  merchantId: string,
  which: { deliveryId?: string; endpointId?: string },
  now: Date,
  maxAgeMs: number,
  batch = 5000,
): Promise<number> {
  let total = 0;
  for (;;) {
    let q = db
      .updateTable("webhook_deliveries")
      .set({ state: "pending", attempts: 0, next_attempt_at: now, expires_at: new Date(now.getTime() + maxAgeMs) })
      .where("merchant_id", "=", merchantId)
      .where("state", "=", "dead");
    if (which.deliveryId !== undefined) q = q.where("delivery_id", "=", which.deliveryId);
    if (which.endpointId !== undefined) q = q.where("endpoint_id", "=", which.endpointId);
    const n = Number((await q.limit(batch).executeTakeFirst()).numUpdatedRows);
    total += n;
    if (n < batch) return total;
  }
}
