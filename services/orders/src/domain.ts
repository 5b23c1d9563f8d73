/**
 * Order rules: the state machine, what a valid order request is, and how
 * requested lines become priced lines against the products they reserve.
 * Imports neither proto nor kysely.
 */
import { PreconditionError, type FieldViolation, type PreconditionViolation, MAX_MINOR_UNITS, longerThan } from "@stockroom/common";
import { validateSku, type Product } from "@stockroom/catalog";

export type OrderState = "pending_payment" | "paid" | "fulfilled" | "cancelled" | "expired";

/** OrderLine is one product and quantity, with the product as it was when its stock was reserved. */
export interface OrderLine {
  sku: string;
  productId: string;
  title: string;
  quantity: number;
  unitPriceMinor: number;
}

/** Order is the stored state of one order. */
export interface Order {
  id: string;
  state: OrderState;
  buyerReference: string;
  /** The currency of every line and of the total. */
  currency: string;
  lines: OrderLine[];
  totalMinor: number;
  paymentId: string | null;
  cancelReason: string;
  version: number;
  createdAt: Date;
  updatedAt: Date;
  /** When the order expires if it is still PENDING_PAYMENT. */
  expireAt: Date;
  /** When it was paid (null before, and for an order paid before this was recorded that has moved on since). */
  paidAt: Date | null;
}

/** RequestedLine is what a CreateOrder line asks for. */
export interface RequestedLine {
  sku: string;
  quantity: number;
}

export const LIMITS = {
  lines: 100,
  buyerReference: 128,
  cancelReason: 500,
  paymentId: 128,
  requestId: 128,
} as const;

/**
 * NEXT_STATES is the state machine: PENDING_PAYMENT → PAID → FULFILLED, or
 * PENDING_PAYMENT → CANCELLED / EXPIRED, or PAID → CANCELLED.
 */
const NEXT_STATES: Record<OrderState, readonly OrderState[]> = {
  pending_payment: ["paid", "cancelled", "expired"],
  paid: ["fulfilled", "cancelled"],
  fulfilled: [],
  cancelled: [],
  expired: [],
};

/** releasesStock tells whether entering state returns the order's reserved stock. */
export function releasesStock(state: OrderState): boolean {
  return state === "cancelled" || state === "expired";
}

/** isFinal tells whether an order in state can never change again. */
export function isFinal(state: OrderState): boolean {
  return NEXT_STATES[state].length === 0;
}

/** stateLabel names a state as the API does (the OrderState value without its prefix), e.g. PENDING_PAYMENT. */
export function stateLabel(state: OrderState): string {
  return state.toUpperCase();
}

/** checkTransition throws FAILED_PRECONDITION, naming the current state, unless order may move to `to`. */
export function checkTransition(order: Pick<Order, "id" | "state">, to: OrderState): void {
  if (NEXT_STATES[order.state].includes(to)) return;
  const current = stateLabel(order.state);
  throw new PreconditionError(
    "INVALID_ORDER_STATE",
    `order "${order.id}" is ${current}; it cannot become ${stateLabel(to)}`,
    { order_id: order.id, current_state: current },
    [{ type: "ORDER_STATE", subject: order.id, description: `the order is ${current}` }],
  );
}

/** validateOrderRequest appends every problem of a CreateOrder request to violations. */
export function validateOrderRequest(
  request: { requestId: string; lines: RequestedLine[]; buyerReference: string },
  violations: FieldViolation[],
): void {
  if (request.requestId === "") {
    violations.push({ field: "request_id", description: "is required: a retried checkout must never reserve twice" });
  } else if (request.requestId.length > LIMITS.requestId) {
    violations.push({ field: "request_id", description: `must be at most ${LIMITS.requestId} characters` });
  }
  if (request.lines.length === 0 || request.lines.length > LIMITS.lines) {
    violations.push({ field: "lines", description: `must hold 1 to ${LIMITS.lines} lines` });
  }
  const firstLine = new Map<string, number>();
  request.lines.forEach((line, i) => {
    const at = `lines[${i}]`;
    validateSku(`${at}.sku`, line.sku, violations);
    const earlier = firstLine.get(line.sku);
    if (earlier !== undefined) violations.push({ field: `${at}.sku`, description: `repeats lines[${earlier}]; order each SKU once` });
    else firstLine.set(line.sku, i);
    if (line.quantity < 1) violations.push({ field: `${at}.quantity`, description: "must be at least 1" });
  });
  if (longerThan(request.buyerReference, LIMITS.buyerReference)) {
    violations.push({ field: "buyer_reference", description: `must be at most ${LIMITS.buyerReference} characters` });
  }
}

/**
 * priceLines turns the requested lines into order lines, priced from the
 * products read (and locked) in the reserving transaction, and checks that
 * every line can be served: the product exists and is active, has the
 * stock, and shares the order's currency (the first line's). Otherwise it
 * throws one FAILED_PRECONDITION listing every failing line: ErrorInfo's
 * reason and metadata name the first, PreconditionFailure all of them.
 * Unknown SKUs are FAILED_PRECONDITION (PRODUCT_NOT_FOUND), not NOT_FOUND:
 * the order is what the call is about, and a checkout can mark every bad
 * line from one answer.
 */
export function priceLines(
  requested: RequestedLine[],
  products: ReadonlyMap<string, Product>,
): { lines: OrderLine[]; currency: string; totalMinor: number } {
  const problems: (PreconditionViolation & { metadata: Record<string, string> })[] = [];
  const problem = (type: string, line: RequestedLine, description: string, extra: Record<string, string> = {}) =>
    problems.push({ type, subject: line.sku, description, metadata: { sku: line.sku, requested: String(line.quantity), ...extra } });
  const currency = requested.map((l) => products.get(l.sku)?.currency).find((c) => c !== undefined) ?? "";
  let total = 0n;
  const lines: OrderLine[] = [];
  for (const line of requested) {
    const product = products.get(line.sku);
    if (!product) {
      problem("PRODUCT_NOT_FOUND", line, `no product has SKU "${line.sku}"`);
      continue;
    }
    if (product.status !== "active") problem("PRODUCT_NOT_ACTIVE", line, `"${line.sku}" is ${product.status}, not for sale`);
    if (product.stock < line.quantity) {
      problem("INSUFFICIENT_STOCK", line, `"${line.sku}" has ${product.stock} in stock; ${line.quantity} requested`, {
        available: String(product.stock),
      });
    }
    if (product.currency !== currency) {
      problem("CURRENCY_MISMATCH", line, `"${line.sku}" is priced in ${product.currency}; the order is in ${currency}`);
    }
    total += BigInt(product.priceMinor) * BigInt(line.quantity);
    lines.push({ sku: line.sku, productId: product.id, title: product.title, quantity: line.quantity, unitPriceMinor: product.priceMinor });
  }
  if (problems.length === 0 && total > MAX_MINOR_UNITS) {
    problems.push({
      type: "TOTAL_TOO_LARGE",
      subject: "total",
      description: `the total exceeds ${MAX_MINOR_UNITS} minor units`,
      metadata: {},
    });
  }
  const first = problems[0];
  if (first) {
    throw new PreconditionError(
      first.type,
      problems.map((p) => p.description).join("; "),
      first.metadata,
      problems.map(({ type, subject, description }) => ({ type, subject, description })),
    );
  }
  return { lines, currency, totalMinor: Number(total) };
}

/**
 * paidBetween is the PAID state an order passed between two looks of
 * WatchOrder's, or undefined: unpaid at the first, two transitions on and
 * paid at the second. The state machine allows no other path to that
 * (PENDING_PAYMENT → PAID → FULFILLED or CANCELLED), and a transition
 * changes nothing but the state, version, update time and what it records
 * (the payment; a cancel reason), so the order as it was then follows from
 * what is stored. Undefined too for an order paid before paid_at was
 * recorded (its time is unknown).
 */
export function paidBetween(before: Order, after: Order): Order | undefined {
  if (before.state !== "pending_payment" || after.version !== before.version + 2 || !after.paidAt || after.paymentId === null)
    return undefined;
  return { ...after, state: "paid", version: before.version + 1, updatedAt: after.paidAt, cancelReason: before.cancelReason };
}
