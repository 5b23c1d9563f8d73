import test from "ava";
import { PreconditionError } from "@stockroom/common";
import { NO_MERCHANDISING, type Product } from "@stockroom/catalog";
import { checkTransition, isFinal, priceLines, releasesStock, type OrderState } from "../src/domain.ts";

const product = (sku: string, overrides: Partial<Product> = {}): Product => ({
  id: `01J${sku.padEnd(23, "0")}`,
  sku,
  title: `Title ${sku}`,
  description: "",
  priceMinor: 500,
  currency: "EUR",
  stock: 10,
  status: "active",
  attributes: {},
  ...NO_MERCHANDISING,
  version: 1,
  createdAt: new Date(0),
  updatedAt: new Date(0),
  ...overrides,
});
const catalog = (...products: Product[]) => new Map(products.map((p) => [p.sku, p]));

test("priceLines keeps request order, snapshots id, title and price, and sums the total", (t) => {
  const priced = priceLines(
    [
      { sku: "B", quantity: 3 },
      { sku: "A", quantity: 1 },
    ],
    catalog(product("A", { priceMinor: 1999 }), product("B")),
  );
  t.deepEqual(
    priced.lines.map((l) => [l.sku, l.title, l.unitPriceMinor, l.quantity]),
    [
      ["B", "Title B", 500, 3],
      ["A", "Title A", 1999, 1],
    ],
  );
  t.is(priced.currency, "EUR");
  t.is(priced.totalMinor, 3499);
});

test("priceLines allows taking the last unit and refuses one more", (t) => {
  t.notThrows(() => priceLines([{ sku: "A", quantity: 10 }], catalog(product("A"))));
  const e = t.throws(() => priceLines([{ sku: "A", quantity: 11 }], catalog(product("A"))), { instanceOf: PreconditionError });
  t.deepEqual(e.metadata, { sku: "A", requested: "11", available: "10" });
});

test("priceLines refuses a total beyond the money limit", (t) => {
  const e = t.throws(() => priceLines([{ sku: "A", quantity: 2 }], catalog(product("A", { priceMinor: 10 ** 15 }))), {
    instanceOf: PreconditionError,
  });
  t.is(e.reason, "TOTAL_TOO_LARGE");
});

test("the state machine: the allowed moves, the final states, and which states return stock", (t) => {
  const states: OrderState[] = ["pending_payment", "paid", "fulfilled", "cancelled", "expired"];
  const allowed = states.flatMap((from) =>
    states
      .filter((to) => {
        try {
          checkTransition({ id: "o", state: from }, to);
          return true;
        } catch {
          return false;
        }
      })
      .map((to) => `${from}->${to}`),
  );
  t.deepEqual(allowed, [
    "pending_payment->paid",
    "pending_payment->cancelled",
    "pending_payment->expired",
    "paid->fulfilled",
    "paid->cancelled",
  ]);
  t.deepEqual(states.filter(isFinal), ["fulfilled", "cancelled", "expired"]);
  t.deepEqual(states.filter(releasesStock), ["cancelled", "expired"]);
});
