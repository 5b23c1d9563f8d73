import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { appendOutbox, PRODUCT_EVENT_BATCH, type OutboxEvent } from "@stockroom/events";
import { newUlid } from "@stockroom/common";
import type { Product } from "./domain.ts";
import { AUDIT_FORMAT, auditStates, CHANGE_TYPE_TO_PROTO, SOURCE_KIND_TO_PROTO } from "./convert.ts";
import { encodeProductEvent } from "./event-codec.ts";
import { insertChangeIfWritten, insertChanges, type CatalogTx, type ChangeType, type SourceKind } from "./store.ts";

/** ChangeContext says who made a change and through which path. */
export interface ChangeContext {
  merchantId: string;
  actor: string;
  sourceKind: SourceKind;
  sourceRef?: string;
  requestId?: string;
  reason?: string;
}

/** ProductChangeRecord is one committed product change to audit and publish. */
export interface ProductChangeRecord {
  type: ChangeType;
  before: Product | undefined;
  /** The state after the change (for a delete: the last state with the tombstone version). */
  product: Product;
  changedFields: string[];
  at: Date;
  /** Who made this change, where it differs from the context of the changes recorded with it (same merchant). */
  ctx?: ChangeContext;
  /** Written by writeIfCurrent (no lock, no read first): its audit entry fails the transaction unless the write applied. */
  unlocked?: boolean;
}

/**
 * BATCH_MIN_EVENTS: a transaction with at least this many changes (a bulk
 * chunk) writes their events as batch rows; fewer (UpdateProduct, an order's
 * lines) stay one row per event. A batch row is a barrier for its merchant in
 * the relay (it cannot see which products it holds), so small multi-change
 * transactions, which gain little from batching, keep publishing in parallel.
 */
export const BATCH_MIN_EVENTS = 50;

/**
 * BATCH_MAX_BYTES bounds one batch row's payload: NATS refuses messages over
 * its max_payload (1 MiB by default), and smaller messages keep the relay's
 * and consumers' memory per message bounded. A chunk of 1,000 typical
 * products (about 300 bytes per event) fits in one row.
 */
export const BATCH_MAX_BYTES = 512 * 1024;

/**
 * recordChanges writes, in the caller's transaction, the audit entries and
 * outbox events of many changes with one multi-row insert each (a bulk chunk
 * of 1,000 items costs two statements, not 2,000). Audit entries keep only
 * the changed fields (convert.ts auditStates). Events of a bulk-sized set of
 * changes go out as batch rows (batchRows), otherwise one row each.
 */
export async function recordChanges(trx: CatalogTx, ctx: ChangeContext, changes: ProductChangeRecord[]): Promise<void> {
  if (changes.length === 0) return;
  // by: who made each change (its own context, or the call's).
  const rows = changes.map((c) => ({ ...c, changeId: newUlid(c.at.getTime()), by: c.ctx ?? ctx }));
  const audit = rows.map(({ changeId, type, before, product, changedFields, at, by }) => {
    const states = auditStates(type, before, product, changedFields);
    return {
      merchant_id: ctx.merchantId,
      change_id: changeId,
      product_id: product.id,
      sku: product.sku,
      change_type: type,
      version: product.version,
      changed_fields: JSON.stringify(changedFields),
      before_state: states.before,
      after_state: states.after,
      actor: by.actor,
      source_kind: by.sourceKind,
      source_ref: by.sourceRef ?? "",
      request_id: by.requestId ?? "",
      reason: by.reason ?? "",
      created_at: at,
      format: AUDIT_FORMAT,
    };
  });
  await insertChanges(
    trx,
    audit.filter((_, i) => !rows[i]!.unlocked),
  );
  for (const [i, row] of audit.entries()) if (rows[i]!.unlocked) await insertChangeIfWritten(trx, row);
  const events = rows.map(({ changeId, type, before, product, changedFields, at, by }) => ({
    merchantId: ctx.merchantId,
    eventId: changeId,
    aggregateType: "product" as const,
    aggregateId: product.id,
    aggregateVersion: product.version,
    eventType: `product.${type}`,
    // toBinary(ProductEventSchema, ...) of the same event, in a quarter of the time (event-codec.ts).
    payload: encodeProductEvent({
      eventId: changeId,
      merchantId: ctx.merchantId,
      type: CHANGE_TYPE_TO_PROTO[type],
      product,
      changedFields,
      sourceKind: SOURCE_KIND_TO_PROTO[by.sourceKind],
      sourceRef: by.sourceRef ?? "",
      occurTime: at,
    }),
    createdAt: at,
    /** When the product last changed before this event (undefined for a create). */
    previousAt: before?.updatedAt,
  }));
  await appendOutbox(trx, events.length < BATCH_MIN_EVENTS ? events : batchRows(ctx.merchantId, events));
}

/**
 * batchRows packs events into batch rows (ProductEventBatch, each at most
 * BATCH_MAX_BYTES) where that keeps every product's events in order, and
 * leaves the others single.
 *
 * The relay publishes rows in event id order, and a product's events must
 * reach the stream in version order, so a batch row's id must sort after
 * every earlier row holding an event of one of its products and before every
 * later one. Its id is a ULID of T, the earliest change time of the set:
 * - a later change of a product in it happens at least 1 ms after that
 *   product's change here (changeTime), so at or after T + 1 ms;
 * - an earlier change of a product happened at its updatedAt before this
 *   change, which is before T unless a clock ran ahead (changeTime then
 *   moved this change past it): such an event stays a single row, whose id
 *   is its own change time, as today.
 * A product changed twice in the set (not done by any writer today) would
 * need its two events in one row in order: the set is then left single.
 */
function batchRows(merchantId: string, events: (OutboxEvent & { previousAt: Date | undefined })[]): OutboxEvent[] {
  const t = Math.min(...events.map((e) => e.createdAt.getTime()));
  if (new Set(events.map((e) => e.aggregateId)).size !== events.length) return events;
  const single: OutboxEvent[] = [];
  const batched: OutboxEvent[] = [];
  for (const e of events) (e.previousAt !== undefined && e.previousAt.getTime() >= t ? single : batched).push(e);
  if (batched.length < 2) return events;
  const out: OutboxEvent[] = [...single];
  let writer = new BinaryWriter();
  let count = 0;
  let bytes = 0;
  const flush = () => {
    if (count === 0) return;
    const batchId = newUlid(t);
    out.push({
      merchantId,
      eventId: batchId,
      aggregateType: "product",
      // The batch is its own aggregate: the relay orders it against its merchant's rows as a whole.
      aggregateId: batchId,
      aggregateVersion: 0,
      eventType: PRODUCT_EVENT_BATCH,
      payload: writer.finish(),
      createdAt: new Date(t),
      eventCount: count,
    });
    writer = new BinaryWriter();
    count = 0;
    bytes = 0;
  };
  for (const e of batched) {
    // Field 1 (repeated ProductEvent events) of ProductEventBatch: the event's own encoding, length-delimited.
    const size = e.payload.length + 6;
    if (count > 0 && bytes + size > BATCH_MAX_BYTES) flush();
    writer.tag(1, WireType.LengthDelimited).bytes(e.payload);
    count++;
    bytes += size;
  }
  flush();
  return out;
}
