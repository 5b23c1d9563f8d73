import { create, toBinary } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { OrderEventSchema } from "@stockroom/sdk/gen/stockroom/order/v1/order_pb.js";
import { appendOutbox } from "@stockroom/events";
import { newUlid } from "@stockroom/common";
import type { Order } from "./domain.ts";
import { EVENT_TO_PROTO, orderToProto, type OrderEventName } from "./convert.ts";
import type { OrderTx } from "./store.ts";

/**
 * recordOrderEvent writes one transition's event (event_type
 * `order.<name>`, a stockroom.order.v1.OrderEvent carrying the order after
 * the transition) to the outbox in the caller's transaction.
 */
export function recordOrderEvent(trx: OrderTx, merchantId: string, name: OrderEventName, order: Order, at: Date): Promise<void> {
  return recordOrderEvents(trx, merchantId, name, [order], at);
}

/** recordOrderEvents writes the same transition's event for many orders with one statement (a hot-SKU batch's orders). */
export async function recordOrderEvents(
  trx: OrderTx,
  merchantId: string,
  name: OrderEventName,
  orders: readonly Order[],
  at: Date,
): Promise<void> {
  await appendOutbox(
    trx,
    orders.map((order) => {
      const eventId = newUlid(at.getTime());
      return {
        merchantId,
        eventId,
        aggregateType: "order",
        aggregateId: order.id,
        aggregateVersion: order.version,
        eventType: `order.${name}`,
        payload: toBinary(
          OrderEventSchema,
          create(OrderEventSchema, {
            eventId,
            merchantId,
            type: EVENT_TO_PROTO[name],
            order: orderToProto(order),
            occurTime: timestampFromDate(at),
          }),
        ),
        createdAt: at,
      };
    }),
  );
}
