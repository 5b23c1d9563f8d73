import { create, toBinary } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { ProductEventSchema } from "@stockroom/sdk/gen/stockroom/catalog/v1/product_pb.js";
import { appendOutbox } from "@stockroom/common/outbox.ts";
import { newUlid } from "@stockroom/common/ulid.ts";
import type { Product } from "./domain.ts";
import { CHANGE_TYPE_TO_PROTO, productToProto, snapshot, SOURCE_KIND_TO_PROTO } from "./convert.ts";
import { insertChange, type CatalogTx, type ChangeType, type SourceKind } from "./store.ts";

/** ChangeContext says who made a change and through which path. */
export interface ChangeContext {
  merchantId: string;
  actor: string;
  sourceKind: SourceKind;
  sourceRef?: string;
  requestId?: string;
  reason?: string;
}

/**
 * recordChange writes, in the caller's transaction, the audit entry and the
 * outbox event of one product change. `product` is the state after the change
 * (for a delete: the last state with the tombstone version).
 */
export async function recordChange(
  trx: CatalogTx,
  ctx: ChangeContext,
  type: ChangeType,
  before: Product | undefined,
  product: Product,
  changedFields: string[],
  at: Date,
): Promise<void> {
  const changeId = newUlid(at.getTime());
  await insertChange(trx, {
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
  });
  const event = create(ProductEventSchema, {
    eventId: changeId,
    merchantId: ctx.merchantId,
    type: CHANGE_TYPE_TO_PROTO[type],
    product: productToProto(product),
    changedFields,
    source: { kind: SOURCE_KIND_TO_PROTO[ctx.sourceKind], reference: ctx.sourceRef ?? "" },
    occurTime: timestampFromDate(at),
  });
  await appendOutbox(trx, [
    {
      merchantId: ctx.merchantId,
      eventId: changeId,
      aggregateType: "product",
      aggregateId: product.id,
      aggregateVersion: product.version,
      eventType: `product.${type}`,
      payload: toBinary(ProductEventSchema, event),
      createdAt: at,
    },
  ]);
}
