/** Orders: the list by state, one order with its lines, followed live (WatchOrder), and its next steps. */
import { FINAL_ORDER_STATES, newRequestId, OrderState, type Order } from "@stockroom/sdk/web";
import { useQuery, useQueryClient } from "@tanstack/react-query";
import { useEffect, useState } from "react";
import { count, money, time, words } from "../format.ts";
import { href } from "../router.ts";
import { client } from "../session.ts";
import { ActionButton, Badge, Empty, ErrorBox, Loading, Pager, usePages } from "../ui.tsx";

const FILTERS: [string, OrderState][] = [
  ["All", OrderState.UNSPECIFIED],
  ["Awaiting payment", OrderState.PENDING_PAYMENT],
  ["Paid", OrderState.PAID],
  ["Fulfilled", OrderState.FULFILLED],
  ["Cancelled", OrderState.CANCELLED],
  ["Expired", OrderState.EXPIRED],
];

const TONES: Record<OrderState, "ok" | "warn" | "bad" | "busy" | "plain"> = {
  [OrderState.UNSPECIFIED]: "plain",
  [OrderState.PENDING_PAYMENT]: "busy",
  [OrderState.PAID]: "ok",
  [OrderState.FULFILLED]: "ok",
  [OrderState.CANCELLED]: "warn",
  [OrderState.EXPIRED]: "warn",
};

function StateBadge({ state }: { state: OrderState }) {
  return <Badge tone={TONES[state]}>{state === OrderState.PENDING_PAYMENT ? "awaiting payment" : words(OrderState[state])}</Badge>;
}

export function OrdersPage() {
  const [state, setState] = useState(OrderState.UNSPECIFIED);
  const pages = usePages();
  const orders = useQuery({
    queryKey: ["orders", state, pages.token],
    queryFn: ({ signal }) => client.orders.listOrders({ pageSize: 25, pageToken: pages.token, state }, { signal }),
  });
  return (
    <>
      <div className="toolbar">
        <h1>Orders</h1>
        <label>
          Show{" "}
          <select
            value={state}
            onChange={(e) => {
              setState(Number(e.target.value));
              pages.reset();
            }}
          >
            {FILTERS.map(([label, s]) => (
              <option key={s} value={s}>
                {label}
              </option>
            ))}
          </select>
        </label>
      </div>
      {orders.isPending ? (
        <Loading what="orders" />
      ) : orders.isError ? (
        <ErrorBox error={orders.error} retry={() => orders.refetch()} />
      ) : orders.data.orders.length === 0 ? (
        <Empty>{state ? "No order in this state." : "No order yet. Orders appear here as your checkout creates them."}</Empty>
      ) : (
        <div className="table-wrap">
          <table>
            <thead>
              <tr>
                <th scope="col">Order</th>
                <th scope="col">State</th>
                <th scope="col">Total</th>
                <th scope="col">Items</th>
                <th scope="col">Created</th>
              </tr>
            </thead>
            <tbody>
              {orders.data.orders.map((o) => (
                <tr key={o.id}>
                  <td>
                    <a href={href("orders", o.id)}>{o.buyerReference || o.id}</a>
                  </td>
                  <td>
                    <StateBadge state={o.state} />
                  </td>
                  <td>{money(o.total)}</td>
                  <td>{count(o.lines.reduce((n, l) => n + l.quantity, 0))}</td>
                  <td>{time(o.createTime)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <Pager
        hasPrev={pages.hasPrev}
        hasNext={!!orders.data?.nextPageToken}
        prev={pages.prev}
        next={() => pages.next(orders.data!.nextPageToken)}
      />
    </>
  );
}

/**
 * useLiveOrder follows an order with WatchOrder until it reaches a final state (the SDK's watchOrder
 * reconnects after a dropped stream and after a server that ends its watches to deploy).
 */
function useLiveOrder(id: string, initial: Order | undefined): Order | undefined {
  const [live, setLive] = useState<Order>();
  const queryClient = useQueryClient();
  const watching = initial !== undefined && !FINAL_ORDER_STATES.has(initial.state);
  useEffect(() => {
    if (!watching) return;
    const abort = new AbortController();
    (async () => {
      try {
        for await (const order of client.watchOrder(id, { signal: abort.signal })) {
          setLive(order);
          void queryClient.invalidateQueries({ queryKey: ["orders"] });
        }
      } catch {
        // Aborted (the page was left), or the server stayed away past the SDK's reconnecting: the page keeps what it has.
      }
    })();
    return () => abort.abort();
  }, [id, watching, queryClient]);
  return live && initial && live.version >= initial.version ? live : initial;
}

export function OrderPage({ id }: { id: string }) {
  const query = useQuery({
    queryKey: ["order", id],
    queryFn: ({ signal }) => client.orders.getOrder({ orderId: id }, { signal }).then((r) => r.order!),
  });
  const order = useLiveOrder(id, query.data);
  return (
    <>
      <p>
        <a href={href("orders")}>← All orders</a>
      </p>
      {query.isPending ? (
        <Loading what="the order" />
      ) : query.isError || !order ? (
        <ErrorBox error={query.error} retry={() => query.refetch()} />
      ) : (
        <OrderView order={order} refresh={() => query.refetch()} />
      )}
    </>
  );
}

function OrderView({ order, refresh }: { order: Order; refresh: () => void }) {
  const [paymentId, setPaymentId] = useState("");
  const [reason, setReason] = useState("");
  return (
    <>
      <h1 className="title-line">
        Order {order.buyerReference || order.id}{" "}
        <span aria-live="polite" data-testid="order-state">
          <StateBadge state={order.state} />
        </span>
      </h1>
      <p className="muted small">
        {order.id} · created {time(order.createTime)}
        {order.state === OrderState.PENDING_PAYMENT && ` · stock held until ${time(order.expireTime)}`}
        {order.paymentId && ` · payment ${order.paymentId}`}
        {order.paidTime && ` · paid ${time(order.paidTime)}`}
        {order.cancelReason && ` · cancelled: ${order.cancelReason}`}
      </p>
      <div className="table-wrap">
        <table>
          <thead>
            <tr>
              <th scope="col">SKU</th>
              <th scope="col">Title</th>
              <th scope="col">Quantity</th>
              <th scope="col">Unit price</th>
              <th scope="col">Line total</th>
            </tr>
          </thead>
          <tbody>
            {order.lines.map((l) => (
              <tr key={l.sku}>
                <td>
                  <a href={href("products", l.sku)}>{l.sku}</a>
                </td>
                <td>{l.title}</td>
                <td>{count(l.quantity)}</td>
                <td>{money(l.unitPrice)}</td>
                <td>{money(l.lineTotal)}</td>
              </tr>
            ))}
          </tbody>
          <tfoot>
            <tr>
              <th scope="row" colSpan={4}>
                Total
              </th>
              <td>{money(order.total)}</td>
            </tr>
          </tfoot>
        </table>
      </div>
      <div className="actions-grid">
        {order.state === OrderState.PENDING_PAYMENT && (
          <div className="card">
            <label htmlFor="payment-id">Payment reference</label>
            <input id="payment-id" value={paymentId} onChange={(e) => setPaymentId(e.target.value)} placeholder="psp_…" />
            <ActionButton
              action={async () => {
                await client.orders.markOrderPaid({ orderId: order.id, paymentId: paymentId.trim() || newRequestId() });
                refresh();
              }}
            >
              Mark paid
            </ActionButton>
          </div>
        )}
        {order.state === OrderState.PAID && (
          <div className="card">
            <ActionButton
              action={async () => {
                await client.orders.fulfillOrder({ orderId: order.id, etag: order.etag });
                refresh();
              }}
            >
              Mark fulfilled
            </ActionButton>
          </div>
        )}
        {(order.state === OrderState.PENDING_PAYMENT || order.state === OrderState.PAID) && (
          <div className="card">
            <label htmlFor="cancel-reason">Reason for cancelling</label>
            <input id="cancel-reason" value={reason} onChange={(e) => setReason(e.target.value)} />
            <ActionButton
              className="danger"
              confirm="Cancel this order? Its stock goes back on sale."
              action={async () => {
                await client.orders.cancelOrder({ orderId: order.id, reason: reason.trim(), etag: order.etag });
                refresh();
              }}
            >
              Cancel order
            </ActionButton>
          </div>
        )}
      </div>
    </>
  );
}
