/** Mapping between the wire (stockroom.order.v1) and the domain. */
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  OrderEventType as ProtoEventType,
  OrderSchema,
  OrderState as ProtoState,
  type Order as ProtoOrder,
} from "@stockroom/sdk/gen/stockroom/order/v1/order_pb.js";
import { InvalidArgumentError, etagOf } from "@stockroom/common";
import type { Order, OrderState } from "./domain.ts";

const STATE_TO_PROTO: Record<OrderState, ProtoState> = {
  pending_payment: ProtoState.PENDING_PAYMENT,
  paid: ProtoState.PAID,
  fulfilled: ProtoState.FULFILLED,
  cancelled: ProtoState.CANCELLED,
  expired: ProtoState.EXPIRED,
};

/** OrderEventName is the transition an event reports; its outbox event_type is `order.<name>`. */
export type OrderEventName = "created" | "paid" | "fulfilled" | "cancelled" | "expired";

export const EVENT_TO_PROTO: Record<OrderEventName, ProtoEventType> = {
  created: ProtoEventType.CREATED,
  paid: ProtoEventType.PAID,
  fulfilled: ProtoEventType.FULFILLED,
  cancelled: ProtoEventType.CANCELLED,
  expired: ProtoEventType.EXPIRED,
};

/** stateFilterFromProto maps ListOrders' state filter: UNSPECIFIED means any state. */
export function stateFilterFromProto(state: ProtoState): OrderState | undefined {
  if (state === ProtoState.UNSPECIFIED) return undefined;
  const found = (Object.keys(STATE_TO_PROTO) as OrderState[]).find((k) => STATE_TO_PROTO[k] === state);
  if (!found) throw new InvalidArgumentError([{ field: "state", description: `unknown state ${state}` }]);
  return found;
}

/** orderToProto maps an order; expire_time is set while the reservation can still run out, and once it has. */
export function orderToProto(o: Order): ProtoOrder {
  const money = (minorUnits: number) => ({ currencyCode: o.currency, minorUnits: BigInt(minorUnits) });
  return create(OrderSchema, {
    id: o.id,
    state: STATE_TO_PROTO[o.state],
    buyerReference: o.buyerReference,
    lines: o.lines.map((l) => ({
      sku: l.sku,
      productId: l.productId,
      title: l.title,
      quantity: l.quantity,
      unitPrice: money(l.unitPriceMinor),
      lineTotal: money(l.unitPriceMinor * l.quantity),
    })),
    total: money(o.totalMinor),
    paymentId: o.paymentId ?? "",
    cancelReason: o.cancelReason,
    version: BigInt(o.version),
    etag: etagOf(o),
    createTime: timestampFromDate(o.createdAt),
    updateTime: timestampFromDate(o.updatedAt),
    expireTime: o.state === "pending_payment" || o.state === "expired" ? timestampFromDate(o.expireAt) : undefined,
    paidTime: o.paidAt ? timestampFromDate(o.paidAt) : undefined,
  });
}
