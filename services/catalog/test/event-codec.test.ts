/**
 * encodeProductEvent against protobuf-es: the same bytes as toBinary of the
 * message productToProto builds, over products that reach every branch
 * (empty and multi-byte strings, defaults, negatives, large numbers, dates
 * before 1970), and the same fields as the schemas, so a field added to a
 * message it writes fails here until the encoder writes it.
 */
import test from "ava";
import { create, fromBinary, toBinary, type DescMessage } from "@bufbuild/protobuf";
import { TimestampSchema, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { ChangeSourceSchema, ProductEventSchema, ProductSchema } from "@stockroom/sdk/gen/stockroom/catalog/v1/product_pb.js";
import { MoneySchema } from "@stockroom/sdk/gen/stockroom/type/v1/money_pb.js";
import { productToProto } from "../src/convert.ts";
import type { Product } from "../src/domain.ts";
import { encodeProductEvent, type ProductEventFields } from "../src/event-codec.ts";

function viaLibrary(e: ProductEventFields): Uint8Array {
  return toBinary(
    ProductEventSchema,
    create(ProductEventSchema, {
      eventId: e.eventId,
      merchantId: e.merchantId,
      type: e.type,
      product: productToProto(e.product),
      changedFields: [...e.changedFields],
      source: { kind: e.sourceKind, reference: e.sourceRef },
      occurTime: timestampFromDate(e.occurTime),
    }),
  );
}

const base: Product = {
  id: "01JD4Q6Z5K3V8X2N7M1B9C0D4E",
  sku: "SKU-1",
  title: "Mug",
  description: "A mug.",
  priceMinor: 1299,
  currency: "EUR",
  stock: 7,
  status: "active",
  attributes: { color: "blue", size: "L" },
  gtin: "4006381333931",
  brand: "Acme",
  compareAtMinor: 1599,
  weightGrams: 350,
  version: 3,
  createdAt: new Date("2026-11-30T10:00:00.123Z"),
  updatedAt: new Date("2026-12-01T08:30:15.999Z"),
};

const event = (product: Product, over: Partial<ProductEventFields> = {}): ProductEventFields => ({
  eventId: "01JD4Q6Z5K3V8X2N7M1B9C0D4F",
  merchantId: "m_0123456789",
  type: 2,
  product,
  changedFields: ["price", "stock"],
  sourceKind: 2,
  sourceRef: "job_42",
  occurTime: new Date("2026-12-01T08:30:15.999Z"),
  ...over,
});

const cases: [string, ProductEventFields][] = [
  ["a typical update", event(base)],
  [
    "defaults everywhere: empty strings, zeros, no attributes, compare-at and weight unset",
    event(
      {
        ...base,
        title: "",
        description: "",
        priceMinor: 0,
        currency: "",
        stock: 0,
        attributes: {},
        gtin: "",
        brand: "",
        compareAtMinor: null,
        weightGrams: null,
        version: 0,
        createdAt: new Date(0),
        updatedAt: new Date(0),
      },
      { eventId: "", merchantId: "", type: 0, changedFields: [], sourceKind: 0, sourceRef: "", occurTime: new Date(0) },
    ),
  ],
  ["weight 0 and compare-at 0 are set, not defaults", event({ ...base, weightGrams: 0, compareAtMinor: 0 })],
  [
    "multi-byte text, empty attribute keys and values, long strings",
    event({
      ...base,
      title: "Tasse « café » 咖啡杯 🫖",
      description: "ü".repeat(5000),
      attributes: { "": "", farbe: "grün", 色: "", emoji: "🫖🫖" },
      brand: "Müller & Söhne",
    }),
  ],
  [
    "negative numbers (int32 and int64 as ten-byte varints), large versions and weights",
    event({ ...base, stock: -5, priceMinor: -1, compareAtMinor: -(2 ** 40), version: 2 ** 53 - 1, weightGrams: 2 ** 31 - 1 }),
  ],
  [
    "dates before 1970 and on a second",
    event({ ...base, createdAt: new Date(-1), updatedAt: new Date(-86_400_000) }, { occurTime: new Date(1_000) }),
  ],
  [
    "a create from a bulk job, archived, many changed fields",
    event(
      { ...base, status: "archived", version: 1 },
      { type: 1, changedFields: ["title", "description", "attributes.color"], sourceKind: 4 },
    ),
  ],
  ["a draft with a lone surrogate in its title", event({ ...base, status: "draft", title: "a\ud800b" })],
];

for (const [name, e] of cases) {
  test(`encodeProductEvent gives toBinary's bytes: ${name}`, (t) => {
    const ours = encodeProductEvent(e);
    t.deepEqual(Buffer.from(ours).toString("hex"), Buffer.from(viaLibrary(e)).toString("hex"));
    // And reads back as the same message.
    t.deepEqual(fromBinary(ProductEventSchema, ours), fromBinary(ProductEventSchema, viaLibrary(e)));
  });
}

test("encodeProductEvent gives toBinary's bytes for 2,000 generated products", (t) => {
  let seed = 42;
  const rand = () => {
    seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
    return seed / 2 ** 31;
  };
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  const text = () =>
    pick([
      "",
      "a",
      "Mug",
      "Tasse grün",
      "咖啡",
      "🫖 tea",
      "x".repeat(200),
      "é".repeat(70),
      "y".repeat(64),
      "z".repeat(65),
      `${"w".repeat(63)}é`,
    ]);
  const int = () => pick([0, 1, 127, 128, 16_383, 16_384, 2 ** 31 - 1, -1, -(2 ** 31), 2 ** 35, 2 ** 53 - 1]);
  for (let i = 0; i < 2_000; i++) {
    const attributes: Record<string, string> = {};
    for (let a = Math.floor(rand() * 4); a > 0; a--) attributes[`${text()}${a}`] = text();
    const product: Product = {
      ...base,
      sku: text(),
      title: text(),
      description: text(),
      priceMinor: int(),
      currency: pick(["", "EUR", "JPY"]),
      stock: pick([0, 1, 500, -3, 2 ** 31 - 1]),
      status: pick(["active", "draft", "archived"] as const),
      attributes,
      gtin: pick(["", "4006381333931"]),
      brand: text(),
      compareAtMinor: pick([null, 0, 999, 2 ** 40]),
      weightGrams: pick([null, 0, 1, 350, 2 ** 31 - 1]),
      version: int() & 0x7fffffff,
      createdAt: new Date(Math.floor(rand() * 4e12) - 1e12),
      updatedAt: new Date(Math.floor(rand() * 4e12)),
    };
    const e = event(product, {
      type: pick([0, 1, 2, 3]),
      changedFields: Array.from({ length: Math.floor(rand() * 4) }, text),
      sourceKind: pick([0, 1, 2, 3, 4]),
      sourceRef: text(),
      occurTime: new Date(Math.floor(rand() * 4e12)),
    });
    let ours: string;
    try {
      ours = Buffer.from(encodeProductEvent(e)).toString("hex");
    } catch (error) {
      t.fail(`product ${i}: ${JSON.stringify(e)}: ${String(error)}`);
      return;
    }
    const theirs = Buffer.from(viaLibrary(e)).toString("hex");
    if (ours !== theirs) {
      t.is(ours, theirs, `product ${i}: ${JSON.stringify(e)}`);
      return;
    }
  }
  t.pass();
});

test("encodeProductEvent writes every field of the messages it covers", (t) => {
  const numbers = (schema: DescMessage) => schema.fields.map((f) => `${f.number} ${f.name}`);
  // Update encodeProductEvent (event-codec.ts) and these lists together.
  t.deepEqual(numbers(ProductEventSchema), [
    "1 event_id",
    "2 merchant_id",
    "3 type",
    "4 product",
    "5 changed_fields",
    "6 source",
    "7 occur_time",
  ]);
  t.deepEqual(numbers(ProductSchema), [
    "1 id",
    "2 sku",
    "3 title",
    "4 description",
    "5 price",
    "6 stock",
    "7 status",
    "8 attributes",
    "9 version",
    "10 etag",
    "11 create_time",
    "12 update_time",
    "13 gtin",
    "14 brand",
    "15 compare_at_price",
    "16 weight_grams",
  ]);
  t.deepEqual(numbers(MoneySchema), ["1 currency_code", "2 minor_units"]);
  t.deepEqual(numbers(ChangeSourceSchema), ["1 kind", "2 reference"]);
  t.deepEqual(numbers(TimestampSchema), ["1 seconds", "2 nanos"]);
});
