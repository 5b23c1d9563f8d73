/**
 * Following orders: watchOrder yields an order at each state it reaches
 * until a final one, through dropped connections and servers that end their
 * watches to deploy (follow.ts).
 */
import type { Client } from "@connectrpc/connect";
import { OrderState, type Order } from "@stockroom/sdk/gen/stockroom/order/v1/order_pb.js";
import type { OrderService } from "@stockroom/sdk/gen/stockroom/order/v1/order_service_pb.js";
import { follow, type FollowOptions } from "./follow.ts";
import type { RetryPolicy } from "./retry.ts";

/** FINAL_ORDER_STATES are the states an order never leaves. */
export const FINAL_ORDER_STATES: ReadonlySet<OrderState> = new Set([OrderState.FULFILLED, OrderState.CANCELLED, OrderState.EXPIRED]);

export type WatchOrderOptions = FollowOptions<Order>;

export async function* watchOrder(
  deps: { orders: Client<typeof OrderService>; retry: RetryPolicy },
  orderId: string,
  options: WatchOrderOptions = {},
): AsyncGenerator<Order> {
  const updates = follow(
    {
      what: `watchOrder: could not follow order ${orderId}`,
      retry: deps.retry,
      // The version seen last: the server streams a state passed while the watch was away (PAID) before the current one.
      open: (signal, lastVersion) => deps.orders.watchOrder({ orderId, sinceVersion: lastVersion > 0n ? lastVersion : 0n }, { signal }),
      resourceOf: (response) => response.order,
      read: async (signal) => (await deps.orders.getOrder({ orderId }, { signal })).order,
      version: (order) => order.version,
      isFinal: (order) => FINAL_ORDER_STATES.has(order.state),
    },
    options,
  );
  for await (const { resource } of updates) yield resource;
}
