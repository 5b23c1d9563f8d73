import { create, toBinary } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { ProductEventSchema } from "@stockroom/sdk/gen/stockroom/catalog/v1/product_pb.js";
import { appendOutbox } from "@stockroom/events";
import { newUlid } from "@stockroom/common";
import type { Product } from "./domain.ts";
import { CHANGE_TYPE_TO_PROTO, productToProto, snapshot, SOURCE_KIND_TO_PROTO } from "./convert.ts";
import { insertChanges, type CatalogTx, type ChangeType, type SourceKind } from "./store.ts";

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
}

/**
 * recordChanges writes, in the caller's transaction, the audit entries and
 * outbox events of many changes with one multi-row insert each (a bulk chunk
 * of 1,000 items costs two statements, not 2,000).
 */
export async function recordChanges(trx: CatalogTx, ctx: ChangeContext, changes: ProductChangeRecord[]): Promise<void> {
  if (changes.length === 0) return;
  const rows = changes.map((c) => ({ ...c, changeId: newUlid(c.at.getTime()) }));
  await insertChanges(
    trx,
    rows.map(({ changeId, type, before, product, changedFields, at }) => ({
      merchant_id: ctx.merchantId,
      change_id: changeId,
      product_id: product.id,
      sku: product.sku,
      change_type: type,
      version: product.version,
      changed_fields: JSON.stringify(changedFields),
      before_state: snapshot(before),
      after_state: type === "deleted" ? null : snapshot(product),
      actor: ctx.actor,
      source_kind: ctx.sourceKind,
      source_ref: ctx.sourceRef ?? "",
      request_id: ctx.requestId ?? "",
      reason: ctx.reason ?? "",
      created_at: at,
    })),
  );
  const source = { kind: SOURCE_KIND_TO_PROTO[ctx.sourceKind], reference: ctx.sourceRef ?? "" };
  await appendOutbox(
    trx,
    rows.map(({ changeId, type, product, changedFields, at }) => ({
      merchantId: ctx.merchantId,
      eventId: changeId,
      aggregateType: "product" as const,
      aggregateId: product.id,
      aggregateVersion: product.version,
      eventType: `product.${type}`,
      payload: toBinary(
        ProductEventSchema,
        create(ProductEventSchema, {
          eventId: changeId,
          merchantId: ctx.merchantId,
          type: CHANGE_TYPE_TO_PROTO[type],
          product: productToProto(product),
          changedFields,
          source,
          occurTime: timestampFromDate(at),
        }),
      ),
      createdAt: at,
    })),
  );
}
