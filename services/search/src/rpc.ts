import type { ServiceImpl } from "@connectrpc/connect";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { ProductStatus as ProtoStatus } from "@stockroom/sdk/gen/stockroom/catalog/v1/product_pb.js";
import type { SearchService } from "@stockroom/sdk/gen/stockroom/search/v1/search_service_pb.js";
import type { Money } from "@stockroom/sdk/gen/stockroom/type/v1/money_pb.js";
import { LIMITS, type CatalogDb } from "@stockroom/catalog";
import { principalOf, decodePageToken, encodePageToken, pageSize } from "@stockroom/common/rpc";
import { InvalidArgumentError, PreconditionError, type FieldViolation, isKnownCurrency, longerThan } from "@stockroom/common";
import { hitToProto, statusFromProto } from "./convert.ts";
import { merchantTag, searchTerms, skuPrefixes } from "./domain.ts";
import type { ProjectionLag } from "./projector.ts";
import { reindexMerchant, type ReindexProgress } from "./reindex.ts";
import { isDbClock, searchProducts, type SearchDb, type SearchQuery } from "./store.ts";

export interface SearchDeps {
  db: SearchDb;
  /** The catalog's database (the API process's own), read by ReindexProducts. */
  catalogDb: CatalogDb;
  /** Reads the projector's lag; GetProjectionLag is refused without it. */
  lag?: () => Promise<ProjectionLag>;
  /** Products ReindexProducts reads and reconciles at a time (default 500). */
  reindexPageSize?: number;
}

/** MAX_QUERY_CHARACTERS bounds a search query (the contract documents it): no real query is longer, and a longer one is work for nothing. */
export const MAX_QUERY_CHARACTERS = 1000;

/** MAX_BRAND_CHARACTERS is the longest brand the catalog stores (Product.brand), so a longer filter can match nothing. */
export const MAX_BRAND_CHARACTERS = LIMITS.brand;

/** createSearchService implements stockroom.search.v1.SearchService over the search projection. */
export function createSearchService({ db, catalogDb, lag, reindexPageSize }: SearchDeps): ServiceImpl<typeof SearchService> {
  return {
    async searchProducts(req, ctx) {
      const { merchantId } = principalOf(ctx);
      const violations: FieldViolation[] = [];
      const text = req.query.trim();
      if (longerThan(text, MAX_QUERY_CHARACTERS)) {
        throw new InvalidArgumentError([{ field: "query", description: `must be at most ${MAX_QUERY_CHARACTERS} characters` }]);
      }
      // The merchant's own words (domain.ts merchantTag).
      const match = text === "" ? undefined : searchTerms(text, merchantTag(merchantId));
      // A query of one token also finds the SKUs it starts ("MUG-1", "tsh-red").
      const prefixes = skuPrefixes(text, LIMITS.sku);
      if (text !== "" && match === undefined && prefixes.length === 0) {
        violations.push({
          field: "query",
          description:
            'has nothing to search for: only one-letter words or common English words ("the", "with"), which are ignored; Chinese, Japanese, Korean, Thai, Lao, Khmer and Burmese letters count at any length',
        });
      }
      const price = priceFilter(req.minPrice, req.maxPrice, violations);
      const status = req.status === ProtoStatus.UNSPECIFIED ? undefined : statusFromProto(req.status);
      if (req.status !== ProtoStatus.UNSPECIFIED && !status)
        violations.push({ field: "status", description: `unknown status ${req.status}` });
      // Surrounding blanks never count; blanks only is no brand filter.
      const brand = req.brand.trim() === "" ? undefined : req.brand.trim();
      if (brand !== undefined && longerThan(brand, MAX_BRAND_CHARACTERS))
        violations.push({ field: "brand", description: `must be at most ${MAX_BRAND_CHARACTERS} characters` });
      if (violations.length > 0) throw new InvalidArgumentError(violations);
      const limit = pageSize(req.pageSize, 20, 100);
      // The page token is bound to every filter (an absent brand leaves the hash of tokens from before brands unchanged).
      const filters = { match, price, inStockOnly: req.inStockOnly, status, brand };
      const position = decodePageToken(req.pageToken, filters);
      // The SKU prefixes come from the same text as match: tokens from before them stay valid (a position is a SKU).
      const query: SearchQuery = {
        ...filters,
        skuPrefixes: prefixes,
        afterSku: position ? String(position[0]) : undefined,
        limit: limit + 1,
      };
      const hits = await searchProducts(db, merchantId, query);
      const page = hits.slice(0, limit);
      return {
        results: page.map(hitToProto),
        nextPageToken: hits.length > limit ? encodePageToken([page.at(-1)!.sku], filters) : "",
      };
    },

    async *reindexProducts(req, ctx) {
      const { merchantId } = principalOf(ctx);
      const from = req.resumeToken === "" ? undefined : decodeResumeToken(req.resumeToken, merchantId);
      for await (const p of reindexMerchant({ catalogDb, searchDb: db, pageSize: reindexPageSize }, merchantId, from)) {
        yield {
          productsRead: BigInt(p.read),
          productsUpdated: BigInt(p.updated),
          productsRemoved: BigInt(p.removed),
          done: p.done,
          resumeToken: p.done ? "" : encodeResumeToken(p, merchantId),
        };
      }
    },

    async getProjectionLag() {
      if (!lag) throw new PreconditionError("PROJECTION_UNAVAILABLE", "this server does not reach the search projector's consumer");
      const { pendingEvents, lagMs } = await lag();
      return { pendingEvents: BigInt(pendingEvents), lag: durationFromMs(lagMs) };
    },
  };
}

/** A resume token is bound to its merchant: another merchant's is refused. */
const resumeBinding = (merchantId: string) => ({ reindex: merchantId });
const isCount = (n: unknown): n is number => Number.isSafeInteger(n) && (n as number) >= 0;

/** encodeResumeToken is a reindex's place after a progress (ReindexResume and its counts), as ReindexProductsResponse.resume_token. */
function encodeResumeToken(p: ReindexProgress, merchantId: string): string {
  return encodePageToken([p.resume.after ?? null, p.resume.startedAt, p.read, p.updated, p.removed], resumeBinding(merchantId));
}

/** decodeResumeToken is the progress a resume_token names, or INVALID_ARGUMENT naming the field. */
function decodeResumeToken(token: string, merchantId: string): ReindexProgress {
  let place: unknown[] | undefined;
  try {
    place = decodePageToken(token, resumeBinding(merchantId));
  } catch {
    place = undefined;
  }
  const [after, startedAt, read, updated, removed] = place ?? [];
  if (
    place?.length !== 5 ||
    (after !== null && typeof after !== "string") ||
    !isDbClock(startedAt) ||
    ![read, updated, removed].every(isCount)
  ) {
    throw new InvalidArgumentError([
      { field: "resume_token", description: "is not a resume_token that ReindexProducts returned to this merchant" },
    ]);
  }
  return {
    read: read as number,
    updated: updated as number,
    removed: removed as number,
    done: false,
    resume: { after: after ?? undefined, startedAt },
  };
}

/** priceFilter checks min_price and max_price and returns the range, if any. */
function priceFilter(min: Money | undefined, max: Money | undefined, violations: FieldViolation[]): SearchQuery["price"] {
  if (!min && !max) return undefined;
  for (const [field, m] of [
    ["min_price", min],
    ["max_price", max],
  ] as const) {
    if (!m) continue;
    if (!isKnownCurrency(m.currencyCode))
      violations.push({ field: `${field}.currency_code`, description: `"${m.currencyCode}" is not an ISO 4217 currency code` });
    if (m.minorUnits < 0n) violations.push({ field: `${field}.minor_units`, description: "must not be negative" });
  }
  if (min && max) {
    if (min.currencyCode !== max.currencyCode)
      violations.push({ field: "max_price.currency_code", description: "must equal min_price.currency_code" });
    else if (min.minorUnits > max.minorUnits)
      violations.push({ field: "max_price.minor_units", description: "must not be below min_price.minor_units" });
  }
  return {
    currency: (min ?? max)!.currencyCode,
    minMinor: min && Number(min.minorUnits),
    maxMinor: max && Number(max.minorUnits),
  };
}
