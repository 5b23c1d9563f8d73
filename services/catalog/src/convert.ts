/** Mapping between the wire (stockroom.catalog.v1) and the domain. */
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  ChangeSourceKind,
  ChangeType as ProtoChangeType,
  ProductChangeDetail,
  ProductChangeSchema,
  ProductSchema,
  ProductStatus as ProtoStatus,
  type Product as ProtoProduct,
  type ProductChange as ProtoProductChange,
} from "@stockroom/sdk/gen/stockroom/catalog/v1/product_pb.js";
import { jsonColumn } from "@stockroom/common/db";
import { type FieldViolation, etagOf } from "@stockroom/common";
import {
  MASK_PATHS,
  maskedFields,
  NO_MERCHANDISING,
  sortedAttributes,
  type Product,
  type ProductFields,
  type ProductStatus,
} from "./domain.ts";
import type { AuditSealColumns, ChangeType, ProductChangeRow, SourceKind } from "./store.ts";

export const STATUS_TO_PROTO: Record<ProductStatus, ProtoStatus> = {
  active: ProtoStatus.ACTIVE,
  draft: ProtoStatus.DRAFT,
  archived: ProtoStatus.ARCHIVED,
};

/** statusFromProto maps a wire status; UNSPECIFIED gives fallback, unknown values a violation. */
export function statusFromProto(
  field: string,
  status: ProtoStatus,
  fallback: ProductStatus | undefined,
  violations: FieldViolation[],
): ProductStatus | undefined {
  const found = (Object.keys(STATUS_TO_PROTO) as ProductStatus[]).find((k) => STATUS_TO_PROTO[k] === status);
  if (found) return found;
  if (status === ProtoStatus.UNSPECIFIED && fallback) return fallback;
  violations.push({ field, description: status === ProtoStatus.UNSPECIFIED ? "is required" : `unknown status ${status}` });
  return undefined;
}

/** fieldsFromProto reads the settable fields of a wire product (unvalidated). */
export function fieldsFromProto(p: ProtoProduct, status: ProductStatus): ProductFields {
  return {
    title: p.title,
    description: p.description,
    priceMinor: Number(p.price?.minorUnits ?? 0n),
    currency: p.price?.currencyCode ?? "",
    stock: p.stock,
    status,
    attributes: sortedAttributes({ ...p.attributes }),
    gtin: p.gtin,
    brand: p.brand,
    compareAtMinor: p.compareAtPrice ? Number(p.compareAtPrice.minorUnits) : null,
    weightGrams: p.weightGrams ?? null,
  };
}

export function productToProto(p: Product): ProtoProduct {
  return create(ProductSchema, {
    id: p.id,
    sku: p.sku,
    title: p.title,
    description: p.description,
    price: { currencyCode: p.currency, minorUnits: BigInt(p.priceMinor) },
    stock: p.stock,
    status: STATUS_TO_PROTO[p.status],
    attributes: p.attributes,
    gtin: p.gtin,
    brand: p.brand,
    compareAtPrice: p.compareAtMinor === null ? undefined : { currencyCode: p.currency, minorUnits: BigInt(p.compareAtMinor) },
    weightGrams: p.weightGrams ?? undefined,
    version: BigInt(p.version),
    etag: etagOf(p),
    createTime: timestampFromDate(p.createdAt),
    updateTime: timestampFromDate(p.updatedAt),
  });
}

/**
 * AUDIT_FORMAT is how recordChanges writes product_changes' before_state and
 * after_state: 1 (the rows of releases before 2026-12, the column's default)
 * holds both whole products; 2 holds the changed fields only (auditStates).
 */
export const AUDIT_FORMAT = 2;

/**
 * AUDIT_GROUPS are the product fields an audit entry keeps together: those
 * each update-mask path sets (maskedFields' table, read with a patch whose
 * every field is unset), and a compare-at price's currency, without which it
 * means nothing. Attributes are kept as the whole map (a rollback puts back
 * any attributes.<key> from it).
 */
const AUDIT_GROUPS: Readonly<Record<string, readonly (keyof ProductFields)[]>> = Object.fromEntries(
  MASK_PATHS.map((path) => {
    const fields = Object.keys(maskedFields({} as ProductFields, [path])) as (keyof ProductFields)[];
    return [path, path === "compare_at_price" ? [...fields, "currency"] : fields];
  }),
);

/** What a create's entry leaves out: its columns hold them. */
const CREATE_LEFT_OUT = new Set(["id", "sku", "version", "createdAt", "updatedAt"]);

/**
 * auditStates is what a format 2 entry stores as before and after (JSON):
 * for an update, the fields of every group that differs or that
 * changedFields names, before and after; for a create, the new product's
 * fields but those its columns hold and the 2026-12 fields left unset
 * (NO_MERCHANDISING); for a delete, the whole last state, as format 1.
 * An update of price and stock is about 60 bytes instead of two ~600-byte
 * products.
 */
export function auditStates(
  type: ChangeType,
  before: Product | undefined,
  after: Product,
  changedFields: readonly string[],
): { before: string | null; after: string | null } {
  if (type === "deleted") return { before: before ? JSON.stringify(before) : null, after: null };
  if (type === "created" || !before) {
    // Built key by key in the product's order (no delete, which would leave a slow dictionary-mode object).
    const fields: Record<string, unknown> = {};
    for (const key in after) {
      if (CREATE_LEFT_OUT.has(key)) continue;
      const value = after[key as keyof Product];
      if (key in NO_MERCHANDISING && value === NO_MERCHANDISING[key as keyof typeof NO_MERCHANDISING]) continue;
      fields[key] = value;
    }
    return { before: null, after: JSON.stringify(fields) };
  }
  const groups = new Set(changedFields.map((f) => (f.startsWith("attributes.") ? "attributes" : f)));
  const was: Partial<ProductFields> = {};
  const now: Partial<ProductFields> = {};
  for (const [group, keys] of Object.entries(AUDIT_GROUPS)) {
    if (!groups.has(group) && keys.every((k) => sameValue(before[k], after[k]))) continue;
    for (const k of keys) {
      Object.assign(was, { [k]: before[k] });
      Object.assign(now, { [k]: after[k] });
    }
  }
  return { before: JSON.stringify(was), after: JSON.stringify(now) };
}

function sameValue(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  const x = a as Record<string, string>;
  const y = b as Record<string, string>;
  const keys = Object.keys(x);
  return keys.length === Object.keys(y).length && keys.every((k) => x[k] === y[k]);
}

/** A stored state as read back: a whole product (format 1, a format 2 delete) or some fields (format 2). */
type StoredState = Partial<Omit<Product, "createdAt" | "updatedAt">> & { createdAt?: string; updatedAt?: string };

function fromSnapshot(json: string | null): Product | undefined {
  if (json === null) return undefined;
  const raw = jsonColumn<Product & { createdAt: string; updatedAt: string }>(json);
  // Entries written before the 2026-12 fields existed have none of them.
  return { ...NO_MERCHANDISING, ...raw, createdAt: new Date(raw.createdAt), updatedAt: new Date(raw.updatedAt) };
}

/** partialToProto is a format 2 state on the wire: identity, version and the fields it holds; the rest unset. */
function partialToProto(row: ProductChangeRow, state: StoredState, version: number, updateTime?: Date): ProtoProduct {
  const money = (minor: number | null | undefined) =>
    minor === undefined || minor === null ? undefined : { currencyCode: state.currency ?? "", minorUnits: BigInt(minor) };
  return create(ProductSchema, {
    id: row.product_id,
    sku: row.sku,
    version: BigInt(version),
    etag: etagOf({ id: row.product_id, version }),
    title: state.title,
    description: state.description,
    price: money(state.priceMinor),
    stock: state.stock,
    status: state.status && STATUS_TO_PROTO[state.status],
    attributes: state.attributes,
    gtin: state.gtin,
    brand: state.brand,
    compareAtPrice: money(state.compareAtMinor),
    weightGrams: state.weightGrams ?? undefined,
    updateTime: updateTime && timestampFromDate(updateTime),
  });
}

export const CHANGE_TYPE_TO_PROTO: Record<ChangeType, ProtoChangeType> = {
  created: ProtoChangeType.CREATED,
  updated: ProtoChangeType.UPDATED,
  deleted: ProtoChangeType.DELETED,
};

export const SOURCE_KIND_TO_PROTO: Record<SourceKind, ChangeSourceKind> = {
  api: ChangeSourceKind.API,
  bulk_job: ChangeSourceKind.BULK_JOB,
  order: ChangeSourceKind.ORDER,
  rollback: ChangeSourceKind.ROLLBACK,
};

/** sourceKindFromProto maps a wire source kind; UNSPECIFIED and unknown values give undefined. */
export function sourceKindFromProto(kind: ChangeSourceKind): SourceKind | undefined {
  return (Object.keys(SOURCE_KIND_TO_PROTO) as SourceKind[]).find((k) => SOURCE_KIND_TO_PROTO[k] === kind);
}

/**
 * changeToProto answers an audit entry. Format 1 entries give whole products
 * (ProductChange.detail FULL); format 2 entries give what they hold
 * (CHANGED_FIELDS): a create's after is rebuilt whole from the row's columns,
 * a delete's before is whole, an update's states hold the changed fields.
 */
export function changeToProto(row: ProductChangeRow & Partial<AuditSealColumns>): ProtoProductChange {
  const compact = Number(row.format ?? 1) >= 2;
  let before: ProtoProduct | undefined;
  let after: ProtoProduct | undefined;
  if (!compact || row.change_type === "deleted") {
    const b = fromSnapshot(row.before_state);
    const a = fromSnapshot(row.after_state);
    before = b && productToProto(b);
    after = a && productToProto(a);
  } else if (row.change_type === "created") {
    const fields = row.after_state === null ? undefined : jsonColumn<StoredState>(row.after_state);
    const a = fields && { ...NO_MERCHANDISING, ...fields, id: row.product_id, sku: row.sku, version: Number(row.version) };
    after =
      a && productToProto({ ...(a as Omit<Product, "createdAt" | "updatedAt">), createdAt: row.created_at, updatedAt: row.created_at });
  } else {
    const version = Number(row.version);
    before = row.before_state === null ? undefined : partialToProto(row, jsonColumn<StoredState>(row.before_state), version - 1);
    after = row.after_state === null ? undefined : partialToProto(row, jsonColumn<StoredState>(row.after_state), version, row.created_at);
  }
  return create(ProductChangeSchema, {
    id: row.change_id,
    productId: row.product_id,
    sku: row.sku,
    type: CHANGE_TYPE_TO_PROTO[row.change_type],
    version: BigInt(row.version),
    changedFields: jsonColumn<string[]>(row.changed_fields),
    before,
    after,
    actor: row.actor,
    source: { kind: SOURCE_KIND_TO_PROTO[row.source_kind], reference: row.source_ref },
    requestId: row.request_id,
    changeTime: timestampFromDate(row.created_at),
    reason: row.reason,
    // An unsealed row has seal_seq 0 and hashes of 32 zero bytes (NULL, if written before 2026_12_04_140000).
    sealSeq: row.seal_seq == null ? 0n : BigInt(row.seal_seq),
    rowHash: Number(row.seal_seq ?? 0) > 0 && row.row_hash ? new Uint8Array(row.row_hash) : new Uint8Array(0),
    detail: compact ? ProductChangeDetail.CHANGED_FIELDS : ProductChangeDetail.FULL,
  });
}
