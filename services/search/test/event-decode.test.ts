/**
 * The projector's event reader against protobuf-es: for each event, the
 * entry (or the refusal) the generic path gives, fromBinary and then the
 * mapping below, which is what the projector ran before event-decode.ts.
 * Events come from create() and from the catalog's own encoder, alone, in
 * batches, merged (two encodings one after the other) and padded with
 * unknown fields of every wire type.
 */
import test from "ava";
import { create, fromBinary, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  ChangeType,
  ProductEventBatchSchema,
  ProductEventSchema,
  type ProductSchema,
  ProductStatus,
  type ProductEvent,
} from "@stockroom/sdk/gen/stockroom/catalog/v1/product_pb.js";
import { encodeProductEvent } from "@stockroom/catalog/testing";
import { statusFromProto } from "../src/convert.ts";
import { decodeProductEvent, decodeProductEventBatch, type DecodedEvent } from "../src/event-decode.ts";
import type { SearchEntry } from "../src/store.ts";

/** The generic path: what the projector stored for a decoded event before event-decode.ts. */
function entryFromEvent(event: ProductEvent): SearchEntry {
  const p = event.product;
  const status = p && statusFromProto(p.status);
  if (!p || !status || p.id === "" || p.sku === "") throw new Error(`event ${event.eventId} carries no valid product`);
  return {
    merchant_id: event.merchantId,
    sku: p.sku,
    product_id: p.id,
    version: Number(p.version),
    deleted: event.type === ChangeType.DELETED ? 1 : 0,
    title: p.title,
    description: p.description,
    attributes_text: Object.values(p.attributes).join(" "),
    price_minor: Number(p.price?.minorUnits ?? 0n),
    currency: p.price?.currencyCode ?? "",
    stock: p.stock,
    status,
    changed_at: event.occurTime ? timestampDate(event.occurTime) : new Date(),
    brand: p.brand === "" ? null : p.brand,
  };
}

/** The same event through the generic path, in DecodedEvent's shape. */
function viaLibrary(bytes: Uint8Array): DecodedEvent {
  const event = fromBinary(ProductEventSchema, bytes);
  const occurMs = event.occurTime ? timestampDate(event.occurTime).getTime() : undefined;
  try {
    return { eventId: event.eventId, occurMs, entry: entryFromEvent(event), error: undefined };
  } catch (error) {
    return { eventId: event.eventId, occurMs, entry: undefined, error: error as Error };
  }
}

/** same compares two readings; without an occur time, changed_at is "now" in both and only checked to be a date. */
function same(t: import("ava").ExecutionContext, got: DecodedEvent, want: DecodedEvent, label: string) {
  t.is(got.eventId, want.eventId, label);
  t.is(got.occurMs, want.occurMs, label);
  t.is(got.error?.message, want.error?.message, label);
  if (!want.entry || !got.entry) return t.is(got.entry, want.entry, label);
  const { changed_at: gotAt, ...gotRest } = got.entry;
  const { changed_at: wantAt, ...wantRest } = want.entry;
  t.deepEqual(gotRest, wantRest, label);
  if (want.occurMs === undefined) t.true(gotAt instanceof Date && Math.abs(gotAt.getTime() - wantAt.getTime()) < 5_000, label);
  else t.is(gotAt.getTime(), wantAt.getTime(), label);
  // Key order decides attributes_text: integer-like keys first, as in any JS object.
  t.is(got.entry.attributes_text, want.entry.attributes_text, label);
}

type EventInit = MessageInitShape<typeof ProductEventSchema>;
type ProductInit = MessageInitShape<typeof ProductSchema>;

const fullProduct: ProductInit = {
  id: "01JD4Q6Z5K3V8X2N7M1B9C0D4E",
  sku: "SKU-1",
  title: "Mug",
  description: "A mug.",
  price: { currencyCode: "EUR", minorUnits: 1299n },
  stock: 7,
  status: ProductStatus.ACTIVE,
  attributes: { color: "blue", size: "L" },
  version: 3n,
  etag: "01JD4Q6Z5K3V8X2N7M1B9C0D4E.3",
  createTime: timestampFromDate(new Date("2026-11-30T10:00:00.123Z")),
  updateTime: timestampFromDate(new Date("2026-12-01T08:30:15.999Z")),
  gtin: "4006381333931",
  brand: "Acme",
  compareAtPrice: { currencyCode: "EUR", minorUnits: 1599n },
  weightGrams: 350,
};

const full: EventInit = {
  eventId: "01JD4Q6Z5K3V8X2N7M1B9C0D4F",
  merchantId: "m_0123456789",
  type: ChangeType.UPDATED,
  product: fullProduct,
  changedFields: ["price", "stock"],
  source: { kind: 2, reference: "job_42" },
  occurTime: { seconds: 1_764_577_815n, nanos: 999_499_999 },
};

/** An event like full, with some product fields (and event fields) replaced. */
const withProduct = (over: ProductInit, event: Partial<EventInit> = {}): EventInit =>
  ({ ...full, ...event, product: { ...fullProduct, ...over } }) as EventInit;

const cases: [string, EventInit][] = [
  ["every field", full],
  ["defaults left out", { eventId: "e", merchantId: "m", product: { id: "p", sku: "s", status: ProductStatus.DRAFT } }],
  ["multi-byte text", withProduct({ title: "Tasse à café ☕ 𝄞", description: 'Ünïcödé\n"quoted"', attributes: { ключ: "значение" } })],
  ["a negative stock and price", withProduct({ stock: -5, price: { currencyCode: "JPY", minorUnits: -120n } })],
  ["the largest int32 stock", withProduct({ stock: 2_147_483_647 })],
  ["the smallest int32 stock", withProduct({ stock: -2_147_483_648 })],
  ["a version past 2^53", withProduct({ version: 2n ** 60n + 3n })],
  ["a negative version", withProduct({ version: -1n })],
  ["a price past 2^53", withProduct({ price: { currencyCode: "IDR", minorUnits: 9_007_199_254_740_993n } })],
  ["a price without a currency", withProduct({ price: { minorUnits: 10n } })],
  ["no price", withProduct({ price: undefined })],
  ["integer-like attribute keys", withProduct({ attributes: { b: "1", "10": "2", a: "3", "2": "4", "": "empty key" } })],
  ["an empty attribute value", withProduct({ attributes: { color: "" } })],
  ["no brand", withProduct({ brand: "" })],
  ["archived", withProduct({ status: ProductStatus.ARCHIVED })],
  ["a delete", withProduct({}, { type: ChangeType.DELETED })],
  ["a create", withProduct({}, { type: ChangeType.CREATED })],
  ["before 1970", withProduct({}, { occurTime: { seconds: -86_401n, nanos: 500_000_000 } })],
  ["half a millisecond rounds up", withProduct({}, { occurTime: { seconds: 1n, nanos: 1_500_000 } })],
  ["no occur time", withProduct({}, { occurTime: undefined })],
  ["no product", { ...full, product: undefined } as EventInit],
  ["no status", withProduct({ status: ProductStatus.UNSPECIFIED })],
  ["an unknown status", withProduct({ status: 42 as ProductStatus })],
  ["a negative status", withProduct({ status: -3 as ProductStatus })],
  ["no sku", withProduct({ sku: "" })],
  ["no id", withProduct({ id: "" })],
  ["an unknown change type", withProduct({}, { type: 9 as ChangeType })],
];

test("each event reads as the generic path reads it", (t) => {
  for (const [label, init] of cases) {
    const bytes = toBinary(ProductEventSchema, create(ProductEventSchema, init));
    same(t, decodeProductEvent(bytes), viaLibrary(bytes), label);
  }
});

test("a batch reads as its events one by one, in order", (t) => {
  const events = cases.map(([, init]) => create(ProductEventSchema, init));
  const bytes = toBinary(ProductEventBatchSchema, create(ProductEventBatchSchema, { events }));
  const got = decodeProductEventBatch(bytes);
  t.is(got.length, events.length);
  for (const [i, [label]] of cases.entries()) same(t, got[i]!, viaLibrary(toBinary(ProductEventSchema, events[i]!)), label);
  t.deepEqual(decodeProductEventBatch(new Uint8Array(0)), []);
});

test("the catalog's own encoder's events read as the generic path reads them", (t) => {
  const product = {
    id: "01JD4Q6Z5K3V8X2N7M1B9C0D4E",
    sku: "SKU-9",
    title: "Lamp 💡",
    description: "",
    priceMinor: 4_999,
    currency: "USD",
    stock: -2,
    status: "draft" as const,
    attributes: { "3": "three", color: "red", "1": "one" },
    gtin: "",
    brand: "Lumen",
    compareAtMinor: null,
    weightGrams: null,
    version: 12,
    createdAt: new Date("1969-12-31T23:59:59.001Z"),
    updatedAt: new Date("2026-12-04T01:02:03.004Z"),
  };
  for (const type of [1, 2, 3]) {
    const bytes = encodeProductEvent({
      eventId: `ev-${type}`,
      merchantId: "m_1",
      type,
      product,
      changedFields: ["title"],
      sourceKind: 2,
      sourceRef: "job_1",
      occurTime: new Date("2026-12-04T01:02:03.004Z"),
    });
    same(t, decodeProductEvent(bytes), viaLibrary(bytes), `type ${type}`);
  }
});

test("a message read twice merges: scalars last, nested messages field by field, map entries added", (t) => {
  const first = toBinary(ProductEventSchema, create(ProductEventSchema, full));
  const second = toBinary(
    ProductEventSchema,
    create(ProductEventSchema, {
      eventId: "second",
      product: { title: "Bigger mug", price: { minorUnits: 1499n }, attributes: { size: "XL", handle: "yes" }, stock: 0 },
      occurTime: { nanos: 1_000_000 },
    }),
  );
  const bytes = Buffer.concat([first, second]);
  same(t, decodeProductEvent(bytes), viaLibrary(bytes), "merged");
  t.is(decodeProductEvent(bytes).entry?.currency, "EUR");
  t.is(decodeProductEvent(bytes).entry?.price_minor, 1499);
});

/** unknownFields writes one field of each wire type, numbers the schemas do not use. */
function unknownFields(w: BinaryWriter): BinaryWriter {
  w.tag(100, WireType.Varint).uint64(2n ** 63n);
  w.tag(101, WireType.Bit64).fixed64(7n);
  w.tag(102, WireType.LengthDelimited).bytes(new Uint8Array([1, 2, 3]));
  w.tag(103, WireType.Bit32).fixed32(9);
  w.tag(104, WireType.StartGroup);
  w.tag(1, WireType.Varint).int32(5);
  w.tag(2, WireType.StartGroup).tag(3, WireType.LengthDelimited).string("nested").tag(2, WireType.EndGroup);
  w.tag(104, WireType.EndGroup);
  return w;
}

test("unknown fields of every wire type are skipped, at every level", (t) => {
  const event = toBinary(ProductEventSchema, create(ProductEventSchema, full));
  // The same event with unknown fields inside the product and the price, and after the event's own fields.
  const price = unknownFields(new BinaryWriter().tag(1, WireType.LengthDelimited).string("GBP")).finish();
  const product = unknownFields(
    new BinaryWriter().tag(2, WireType.LengthDelimited).string("SKU-U").tag(5, WireType.LengthDelimited).bytes(price),
  ).finish();
  const padded = unknownFields(new BinaryWriter().raw(event).tag(4, WireType.LengthDelimited).bytes(product)).finish();
  same(t, decodeProductEvent(padded), viaLibrary(padded), "padded event");
  t.is(decodeProductEvent(padded).entry?.sku, "SKU-U");
  t.is(decodeProductEvent(padded).entry?.currency, "GBP");

  const batch = unknownFields(new BinaryWriter().tag(1, WireType.LengthDelimited).bytes(padded)).finish();
  const got = decodeProductEventBatch(batch);
  t.is(got.length, 1);
  same(t, got[0]!, viaLibrary(padded), "padded batch");
});

test("an int32 field keeps the low 32 bits of a longer varint", (t) => {
  const product = new BinaryWriter()
    .tag(1, WireType.LengthDelimited)
    .string("p")
    .tag(2, WireType.LengthDelimited)
    .string("s")
    .tag(6, WireType.Varint)
    .uint64(2n ** 32n + 5n)
    .tag(7, WireType.Varint)
    .uint64(2n ** 40n + 2n)
    .finish();
  const bytes = new BinaryWriter().tag(4, WireType.LengthDelimited).bytes(product).finish();
  same(t, decodeProductEvent(bytes), viaLibrary(bytes), "long varints");
  t.is(decodeProductEvent(bytes).entry?.stock, 5);
  t.is(decodeProductEvent(bytes).entry?.status, "draft");
});

test("bytes that are not an event are refused, as the generic path refuses them", (t) => {
  const event = toBinary(ProductEventSchema, create(ProductEventSchema, full));
  for (const cut of [1, 5, 20, event.length - 1]) {
    const bytes = event.subarray(0, cut);
    t.throws(() => fromBinary(ProductEventSchema, bytes), undefined, `generic, cut at ${cut}`);
    t.throws(() => decodeProductEvent(bytes), undefined, `cut at ${cut}`);
  }
  const batch = toBinary(ProductEventBatchSchema, create(ProductEventBatchSchema, { events: [create(ProductEventSchema, full)] }));
  t.throws(() => decodeProductEventBatch(batch.subarray(0, batch.length - 3)));
  // A field number 0 and a stray end of group.
  t.throws(() => decodeProductEvent(new Uint8Array([0x00, 0x01])));
  t.throws(() => decodeProductEvent(new Uint8Array([(5 << 3) | WireType.EndGroup])));
  // A known field on the wrong wire type.
  t.throws(() => decodeProductEvent(new BinaryWriter().tag(3, WireType.LengthDelimited).string("x").finish()), {
    message: /ProductEvent\.type: wire type 2/,
  });
});
