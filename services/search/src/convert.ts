/** Mapping between catalog products (rows or events), search rows and the wire (stockroom.search.v1). */
import { create } from "@bufbuild/protobuf";
import type { ProductStatus as ProtoStatus } from "@stockroom/sdk/gen/stockroom/catalog/v1/product_pb.js";
import { SearchResultSchema, type SearchResult } from "@stockroom/sdk/gen/stockroom/search/v1/search_service_pb.js";
import { type Product, type ProductStatus, STATUS_TO_PROTO } from "@stockroom/catalog";
import type { SearchEntry, SearchHit } from "./store.ts";

const STATUS_FROM_PROTO = new Map(Object.entries(STATUS_TO_PROTO).map(([k, v]) => [v, k as ProductStatus]));

/** statusFromProto maps a wire status; UNSPECIFIED (and unknown values) give undefined. */
export function statusFromProto(status: ProtoStatus): ProductStatus | undefined {
  return STATUS_FROM_PROTO.get(status);
}

/** entryFromProduct is a catalog row's state as the projection stores it (the reindex path). */
export function entryFromProduct(merchantId: string, p: Product): SearchEntry {
  return {
    merchant_id: merchantId,
    sku: p.sku,
    product_id: p.id,
    version: p.version,
    deleted: 0,
    title: p.title,
    description: p.description,
    attributes_text: Object.values(p.attributes).join(" "),
    price_minor: p.priceMinor,
    currency: p.currency,
    stock: p.stock,
    status: p.status,
    changed_at: p.updatedAt,
    brand: storedBrand(p.brand),
  };
}

/** storedBrand is how the projection stores a brand: none (empty in the catalog's Product and on the wire) is NULL. */
export function storedBrand(brand: string): string | null {
  return brand === "" ? null : brand;
}

export function hitToProto(hit: SearchHit): SearchResult {
  return create(SearchResultSchema, {
    id: hit.product_id,
    sku: hit.sku,
    title: hit.title,
    price: { currencyCode: hit.currency, minorUnits: BigInt(hit.price_minor) },
    stock: hit.stock,
    status: STATUS_TO_PROTO[hit.status],
    version: BigInt(hit.version),
  });
}
