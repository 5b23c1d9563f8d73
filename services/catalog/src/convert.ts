/** Mapping between the wire (stockroom.catalog.v1) and the domain. */
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  ChangeSourceKind,
  ChangeType as ProtoChangeType,
  ProductChangeSchema,
  ProductSchema,
  ProductStatus as ProtoStatus,
  type Product as ProtoProduct,
  type ProductChange as ProtoProductChange,
} from "@stockroom/sdk/gen/stockroom/catalog/v1/product_pb.js";
import { jsonColumn } from "@stockroom/common/db";
import { type FieldViolation, etagOf } from "@stockroom/common";
import { NO_MERCHANDISING, sortedAttributes, type Product, type ProductFields, type ProductStatus } from "./domain.ts";
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

/** snapshot serializes a product for the audit trail's before/after columns. */
export function snapshot(p: Product | undefined): string | null {
  return p ? JSON.stringify(p) : null;
}

function fromSnapshot(json: string | null): Product | undefined {
  if (json === null) return undefined;
  const raw = jsonColumn<Product & { createdAt: string; updatedAt: string }>(json);
  // Entries written before the 2026-12 fields existed have none of them.
  return { ...NO_MERCHANDISING, ...raw, createdAt: new Date(raw.createdAt), updatedAt: new Date(raw.updatedAt) };
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

export function changeToProto(row: ProductChangeRow & Partial<AuditSealColumns>): ProtoProductChange {
  const before = fromSnapshot(row.before_state);
  const after = fromSnapshot(row.after_state);
  return create(ProductChangeSchema, {
    id: row.change_id,
    productId: row.product_id,
    sku: row.sku,
    type: CHANGE_TYPE_TO_PROTO[row.change_type],
    version: BigInt(row.version),
    changedFields: jsonColumn<string[]>(row.changed_fields),
    before: before && productToProto(before),
    after: after && productToProto(after),
    actor: row.actor,
    source: { kind: SOURCE_KIND_TO_PROTO[row.source_kind], reference: row.source_ref },
    requestId: row.request_id,
    changeTime: timestampFromDate(row.created_at),
    reason: row.reason,
    sealSeq: row.seal_seq == null ? 0n : BigInt(row.seal_seq),
    rowHash: row.row_hash ? new Uint8Array(row.row_hash) : new Uint8Array(0),
  });
}
