import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import type { DescMessage, MessageInitShape, MessageShape } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import {
  AdjustStockRequestSchema,
  AdjustStockResponseSchema,
  type CatalogService,
  CreateProductRequestSchema,
  CreateProductResponseSchema,
  DeleteProductRequestSchema,
  DeleteProductResponseSchema,
  UpdateProductRequestSchema,
  UpdateProductResponseSchema,
} from "@stockroom/sdk/gen/stockroom/catalog/v1/catalog_service_pb.js";
import {
  ChangeSourceKind,
  ProductStatus as ProtoStatus,
  type Product as ProtoProduct,
} from "@stockroom/sdk/gen/stockroom/catalog/v1/product_pb.js";
import {
  principalOf,
  type Principal,
  idempotentMutation,
  type IdempotentCall,
  decodePageToken,
  encodePageToken,
  pageSize,
} from "@stockroom/common/rpc";
import { ER_DUP_ENTRY, mysqlErrno } from "@stockroom/common/db";
import {
  AlreadyExistsError,
  EtagMismatchError,
  InvalidArgumentError,
  NotFoundError,
  PreconditionError,
  type FieldViolation,
  newUlid,
  checkEtag,
  checkTimestamp,
  etagMatches,
  etagOf,
  longerThan,
} from "@stockroom/common";
import {
  applyMask,
  isMaskPath,
  maskedFields,
  LIMITS,
  MASK_PATHS,
  validateCompareAt,
  validateFields,
  validateSku,
  type MaskPath,
  type Product,
  type ProjectionWaiter,
} from "./domain.ts";
import { createRecentProducts, RECENT_PRODUCTS } from "./recent-products.ts";
import { changeToProto, fieldsFromProto, productToProto, sourceKindFromProto, statusFromProto } from "./convert.ts";
import { lockProduct, writeProducts, type ChangeContext } from "./product-writes.ts";
import {
  findProduct,
  findProductById,
  findProducts,
  isStaleWrite,
  listChanges,
  listMerchantChanges,
  listProducts,
  type CatalogDb,
  type CatalogTx,
} from "./store.ts";

export interface CatalogDeps {
  db: CatalogDb;
  /** Serves UpdateProduct's wait_for_search; without it the flag is refused. */
  searchWaiter?: ProjectionWaiter;
  /** The longest wait_for_search waits when the call has a longer deadline or none (default 10 s). */
  searchWaitMaxMs?: number;
  /** Counts the one-round-trip UpdateProducts (updateIfCurrent): applied, or stale. */
  countFromKnownState?: (outcome: "applied" | "stale") => void;
}

/** createCatalogService implements stockroom.catalog.v1.CatalogService over MySQL. */
export function createCatalogService({
  db,
  searchWaiter,
  searchWaitMaxMs = 10_000,
  countFromKnownState,
}: CatalogDeps): ServiceImpl<typeof CatalogService> {
  /** waitForSearch waits until search holds the product as returned, within the call's deadline and the server's limit. */
  async function waitForSearch(merchantId: string, product: ProtoProduct, callSignal: AbortSignal): Promise<void> {
    const signal = AbortSignal.any([callSignal, AbortSignal.timeout(searchWaitMaxMs)]);
    const target = { merchantId, sku: product.sku, productId: product.id, version: Number(product.version) };
    try {
      await searchWaiter!.waitFor(target, signal);
    } catch (error) {
      if (!signal.aborted) throw error;
      if (callSignal.aborted) throw callSignal.reason; // the caller's deadline (DEADLINE_EXCEEDED) or cancel
      throw new ConnectError(
        `search has not applied version ${target.version} of "${target.sku}" within ${searchWaitMaxMs} ms; the update is committed`,
        Code.DeadlineExceeded,
      );
    }
  }

  /** The products this server last read or wrote, for updateIfCurrent (recent-products.ts). */
  const recent = createRecentProducts(RECENT_PRODUCTS);
  /** The states behind the answers mutations built, until commit sees whether they committed. */
  const built = new WeakMap<ProtoProduct, Product>();

  /** answer is a mutation's response for the product state it wrote. */
  const answer = (product: Product) => {
    const proto = productToProto(product);
    built.set(proto, product);
    return { product: proto };
  };

  /**
   * commit runs a catalog mutation (mutate) and, once its transaction is
   * over, keeps the state it committed: only when the answer is the very
   * message its last attempt built (answer), not a stored answer replayed
   * for a retried request_id, nor one of a COMMIT that failed.
   */
  const commit = async <Req extends DescMessage, Res extends DescMessage>(
    principal: Principal,
    call: CatalogCall<Req, Res>,
    run: (trx: CatalogTx, change: ChangeContext) => Promise<MessageInitShape<Res>>,
  ): Promise<MessageShape<Res>> => {
    const res = await mutate(db, principal, call, run);
    const sent = (res as { product?: ProtoProduct }).product;
    const product = sent && built.get(sent);
    if (product) recent.set(principal.merchantId, product);
    return res;
  };

  /**
   * updateIfCurrent is a conditional UpdateProduct in one round trip: when
   * the call's etag names the state this server last saw of the product
   * (recent), it computes the change from that state (plan; a change it
   * would refuse, or no change, is left to the locking path to answer) and
   * writes it with writeIfCurrent: BEGIN, the write, the audit entry, the
   * event, the idempotency key and the COMMIT go out together, with no read
   * and no lock taken first. If the row is no longer that state (another
   * writer, another replica, a deleted product), the write fails the
   * transaction, nothing commits, and it returns undefined: the caller runs
   * the locking path, which reads the row and answers as it always did.
   * Only calls with an etag take it: their write was refused anyway when the
   * row moved on (ABORTED, or NOT_FOUND), so its extra round trips are only
   * ever spent on a call that fails. A call without one, which would
   * succeed on whatever state the row has, never pays for a stale entry.
   */
  async function updateIfCurrent(
    principal: Principal,
    sku: string,
    etag: string | undefined,
    call: CatalogCall<typeof UpdateProductRequestSchema, typeof UpdateProductResponseSchema>,
    plan: (current: Product, violations: FieldViolation[]) => { next: Product; changed: string[] },
  ): Promise<MessageShape<typeof UpdateProductResponseSchema> | undefined> {
    if (etag === undefined) return undefined;
    const known = recent.get(principal.merchantId, sku);
    if (!known || !etagMatches(etag, known)) return undefined;
    const refused: FieldViolation[] = [];
    const planned = plan(known, refused);
    if (refused.length > 0 || planned.changed.length === 0) return undefined;
    try {
      const res = await commit(principal, call, async (trx, change) => {
        const [updated] = await writeProducts(trx, change, [
          { kind: "update-if-current", before: known, fields: planned.next, changedFields: planned.changed },
        ]);
        return answer(updated!);
      });
      countFromKnownState?.("applied");
      return res;
    } catch (error) {
      recent.delete(principal.merchantId, sku);
      if (!isStaleWrite(error)) throw error;
      countFromKnownState?.("stale");
      return undefined;
    }
  }

  return {
    async createProduct(req, ctx) {
      const principal = principalOf(ctx);
      const violations: FieldViolation[] = [];
      const p = req.product;
      if (!p) throw new InvalidArgumentError([{ field: "product", description: "is required" }]);
      validateSku("product.sku", p.sku, violations);
      if (!p.price) violations.push({ field: "product.price", description: "is required" });
      const status = statusFromProto("product.status", p.status, "active", violations);
      const fields = fieldsFromProto(p, status ?? "active");
      validateFields("product", fields, violations);
      validateCompareAt("product.compare_at_price.currency_code", undefined, fields, p.compareAtPrice?.currencyCode, violations);
      if (violations.length > 0) throw new InvalidArgumentError(violations);

      const call = catalogCall("CreateProduct", req, CreateProductRequestSchema, CreateProductResponseSchema);
      return commit(principal, call, async (trx, change) => {
        try {
          const [product] = await writeProducts(trx, change, [{ kind: "create", product: { id: newUlid(), sku: p.sku, ...fields } }]);
          return answer(product!);
        } catch (error) {
          if (mysqlErrno(error) === ER_DUP_ENTRY) throw new AlreadyExistsError("product", p.sku);
          throw error;
        }
      });
    },

    async getProduct(req, ctx) {
      const { merchantId } = principalOf(ctx);
      if ((req.sku === "") === (req.id === "")) {
        throw new InvalidArgumentError([{ field: "sku", description: "exactly one of sku and id must be set" }]);
      }
      const product = req.sku !== "" ? await findProduct(db, merchantId, req.sku) : await findProductById(db, merchantId, req.id);
      if (!product) throw new NotFoundError("product", req.sku || req.id);
      recent.set(merchantId, product);
      return { product: productToProto(product) };
    },

    async batchGetProducts(req, ctx) {
      const { merchantId } = principalOf(ctx);
      if (req.skus.length === 0 || req.skus.length > 100) {
        throw new InvalidArgumentError([{ field: "skus", description: "must name 1 to 100 SKUs" }]);
      }
      const unique = [...new Set(req.skus)];
      const found = new Map((await findProducts(db, merchantId, unique)).map((p) => [p.sku, p]));
      return {
        products: unique.flatMap((sku) => (found.has(sku) ? [productToProto(found.get(sku)!)] : [])),
        missingSkus: unique.filter((sku) => !found.has(sku)),
      };
    },

    async listProducts(req, ctx) {
      const { merchantId } = principalOf(ctx);
      const violations: FieldViolation[] = [];
      const status = req.status === ProtoStatus.UNSPECIFIED ? undefined : statusFromProto("status", req.status, undefined, violations);
      if (req.updatedSince) checkTimestamp("updated_since", req.updatedSince, violations);
      if (violations.length > 0) throw new InvalidArgumentError(violations);
      const limit = pageSize(req.pageSize, 100, 1000);
      const updatedSince = req.updatedSince ? timestampDate(req.updatedSince) : undefined;
      const order = updatedSince ? "updated" : "sku";
      const filters = { updatedSince: updatedSince?.toISOString(), status };
      const position = decodePageToken(req.pageToken, filters) as [string, string?] | undefined;
      const after = position && { sku: String(position[0]), updatedAt: position[1] ? new Date(position[1]) : undefined };
      const rows = await listProducts(db, merchantId, { order, after, updatedSince, status, limit: limit + 1 });
      const page = rows.slice(0, limit);
      const last = page.at(-1);
      return {
        products: page.map(productToProto),
        nextPageToken:
          rows.length > limit && last
            ? encodePageToken(order === "updated" ? [last.sku, last.updatedAt.toISOString()] : [last.sku], filters)
            : "",
      };
    },

    async updateProduct(req, ctx) {
      const principal = principalOf(ctx);
      const p = req.product;
      if (!p) throw new InvalidArgumentError([{ field: "product", description: "is required" }]);
      const violations: FieldViolation[] = [];
      validateSku("product.sku", p.sku, violations);
      const etag = checkEtag("product.etag", p.etag, violations);
      const paths = maskPaths(p, req.updateMask?.paths ?? [], violations);
      const status = paths.includes("status") ? statusFromProto("product.status", p.status, undefined, violations) : undefined;
      const patch = fieldsFromProto(p, status ?? "active");
      validateFields("product", maskedFields(patch, paths), violations);
      if (violations.length > 0) throw new InvalidArgumentError(violations);
      if (req.waitForSearch && !searchWaiter) {
        throw new PreconditionError("SEARCH_UNAVAILABLE", "wait_for_search needs a search projection, and this server has none");
      }

      const call = catalogCall("UpdateProduct", req, UpdateProductRequestSchema, UpdateProductResponseSchema);
      /** plan is the change the call asks of the product's current state (violations: what it refuses). */
      const plan = (current: Product, wrong: FieldViolation[]) => {
        const change = applyMask(current, patch, paths);
        const given = paths.includes("compare_at_price") ? p.compareAtPrice?.currencyCode : undefined;
        validateCompareAt("product.compare_at_price.currency_code", current, change.next, given, wrong);
        return change;
      };
      const res =
        (await updateIfCurrent(principal, p.sku, etag, call, plan)) ??
        (await commit(principal, call, async (trx, change) => {
          const current = await lockForCall(trx, principal.merchantId, p.sku, etag);
          // Read under its lock: a committed state, whatever this transaction does next.
          recent.set(principal.merchantId, current);
          const { next, changed } = plan(current, violations);
          if (violations.length > 0) throw new InvalidArgumentError(violations);
          if (changed.length === 0) return { product: productToProto(current) };
          const [updated] = await writeProducts(trx, change, [{ kind: "update", before: current, fields: next, changedFields: changed }]);
          return answer(updated!);
        }));
      // After the commit: the projection can only apply what the relay has published.
      if (req.waitForSearch) await waitForSearch(principal.merchantId, res.product!, ctx.signal);
      return res;
    },

    async deleteProduct(req, ctx) {
      const principal = principalOf(ctx);
      const violations: FieldViolation[] = [];
      validateSku("sku", req.sku, violations);
      const etag = checkEtag("etag", req.etag, violations);
      if (violations.length > 0) throw new InvalidArgumentError(violations);

      recent.delete(principal.merchantId, req.sku);
      const call = catalogCall("DeleteProduct", req, DeleteProductRequestSchema, DeleteProductResponseSchema);
      return mutate(db, principal, call, async (trx, change) => {
        const current = await lockForCall(trx, principal.merchantId, req.sku, etag);
        await writeProducts(trx, change, [{ kind: "delete", before: current }]);
        return { product: productToProto(current) };
      });
    },

    async adjustStock(req, ctx) {
      const principal = principalOf(ctx);
      const violations: FieldViolation[] = [];
      validateSku("sku", req.sku, violations);
      const etag = checkEtag("etag", req.etag, violations);
      if (req.delta === 0) violations.push({ field: "delta", description: "must not be zero" });
      if (longerThan(req.reason, LIMITS.reason)) {
        violations.push({ field: "reason", description: `must be at most ${LIMITS.reason} characters` });
      }
      if (violations.length > 0) throw new InvalidArgumentError(violations);

      const call = catalogCall("AdjustStock", req, AdjustStockRequestSchema, AdjustStockResponseSchema);
      return commit(principal, call, async (trx, change) => {
        const current = await lockForCall(trx, principal.merchantId, req.sku, etag);
        const stock = current.stock + req.delta;
        if (stock < 0) {
          throw new PreconditionError("INSUFFICIENT_STOCK", `stock of "${req.sku}" is ${current.stock}; cannot remove ${-req.delta}`, {
            sku: req.sku,
            available: String(current.stock),
            requested: String(-req.delta),
          });
        }
        if (stock > LIMITS.stock) {
          throw new PreconditionError("STOCK_OVERFLOW", `stock of "${req.sku}" would exceed ${LIMITS.stock}`, {
            sku: req.sku,
            available: String(current.stock),
          });
        }
        const [next] = await writeProducts(trx, { ...change, reason: req.reason }, [{ kind: "stock", before: current, delta: req.delta }]);
        return answer(next!);
      });
    },

    async listProductHistory(req, ctx) {
      const { merchantId } = principalOf(ctx);
      const violations: FieldViolation[] = [];
      validateSku("sku", req.sku, violations);
      if (violations.length > 0) throw new InvalidArgumentError(violations);
      const limit = pageSize(req.pageSize, 100, 1000);
      const position = decodePageToken(req.pageToken, { sku: req.sku });
      const rows = await listChanges(db, merchantId, req.sku, position ? String(position[0]) : undefined, limit + 1);
      if (rows.length === 0 && !position && !(await findProduct(db, merchantId, req.sku))) {
        throw new NotFoundError("product", req.sku);
      }
      const page = rows.slice(0, limit);
      return {
        changes: page.map(changeToProto),
        nextPageToken: rows.length > limit ? encodePageToken([page.at(-1)!.change_id], { sku: req.sku }) : "",
      };
    },

    async listChanges(req, ctx) {
      const { merchantId } = principalOf(ctx);
      const violations: FieldViolation[] = [];
      const kind = req.source?.kind ?? ChangeSourceKind.UNSPECIFIED;
      const reference = req.source?.reference ?? "";
      const sourceKind = sourceKindFromProto(kind);
      if (kind !== ChangeSourceKind.UNSPECIFIED && !sourceKind) {
        violations.push({ field: "source.kind", description: `unknown source kind ${kind}` });
      }
      if (reference !== "" && kind === ChangeSourceKind.UNSPECIFIED) {
        violations.push({ field: "source.kind", description: "is required when source.reference is set" });
      }
      if (reference.length > 26) violations.push({ field: "source.reference", description: "must be at most 26 characters" });
      if (req.sku !== "") validateSku("sku", req.sku, violations);
      if (violations.length > 0) throw new InvalidArgumentError(violations);
      const limit = pageSize(req.pageSize, 100, 1000);
      const filters = { kind: sourceKind, reference, sku: req.sku };
      const position = decodePageToken(req.pageToken, filters);
      const rows = await listMerchantChanges(db, merchantId, {
        sourceKind,
        sourceRef: reference === "" ? undefined : reference,
        sku: req.sku === "" ? undefined : req.sku,
        beforeChangeId: position ? String(position[0]) : undefined,
        limit: limit + 1,
      });
      const page = rows.slice(0, limit);
      return {
        changes: page.map(changeToProto),
        nextPageToken: rows.length > limit ? encodePageToken([page.at(-1)!.change_id], filters) : "",
      };
    },
  };
}

/** CatalogCall is a catalog mutation's idempotent call; the merchant comes from the principal. */
type CatalogCall<Req extends DescMessage, Res extends DescMessage> = Omit<IdempotentCall<Req, Res>, "merchantId">;

/** catalogCall describes CatalogService.<method>'s call of request, keyed by its request_id. */
function catalogCall<Req extends DescMessage, Res extends DescMessage>(
  method: string,
  request: MessageShape<Req> & { requestId: string },
  requestSchema: Req,
  responseSchema: Res,
): CatalogCall<Req, Res> {
  return { method: `CatalogService.${method}`, requestId: request.requestId, requestSchema, request, responseSchema };
}

/** mutate runs one catalog mutation (idempotentMutation) as the caller's principal, from the API. */
function mutate<Req extends DescMessage, Res extends DescMessage>(
  db: CatalogDb,
  principal: Principal,
  call: CatalogCall<Req, Res>,
  run: (trx: CatalogTx, change: ChangeContext) => Promise<MessageInitShape<Res>>,
): Promise<MessageShape<Res>> {
  const change: ChangeContext = {
    merchantId: principal.merchantId,
    actor: principal.actor,
    sourceKind: "api",
    requestId: call.requestId,
  };
  return idempotentMutation(db, { ...call, merchantId: principal.merchantId }, (trx) => run(trx, change));
}

/** lockForCall reads and locks the product, enforcing the caller's etag if one was sent. */
async function lockForCall(trx: CatalogTx, merchantId: string, sku: string, etag: string | undefined): Promise<Product> {
  const current = await lockProduct(trx, merchantId, sku);
  if (!current) throw new NotFoundError("product", sku);
  if (etag !== undefined && !etagMatches(etag, current)) throw new EtagMismatchError(`product "${sku}"`, etagOf(current));
  return current;
}

/** maskPaths resolves update_mask (AIP-134): explicit paths, "*", or implied by populated fields. */
function maskPaths(p: ProtoProduct, requested: string[], violations: FieldViolation[]): MaskPath[] {
  if (requested.length === 1 && requested[0] === "*") return [...MASK_PATHS];
  if (requested.length === 0) {
    const implied: MaskPath[] = [];
    if (p.title !== "") implied.push("title");
    if (p.description !== "") implied.push("description");
    if (p.price) implied.push("price");
    if (p.stock !== 0) implied.push("stock");
    if (p.status !== ProtoStatus.UNSPECIFIED) implied.push("status");
    for (const key of Object.keys(p.attributes)) implied.push(`attributes.${key}`);
    if (p.gtin !== "") implied.push("gtin");
    if (p.brand !== "") implied.push("brand");
    if (p.compareAtPrice) implied.push("compare_at_price");
    if (p.weightGrams !== undefined) implied.push("weight_grams");
    if (implied.length === 0) violations.push({ field: "update_mask", description: "names no field and the product sets none" });
    return implied;
  }
  const paths: MaskPath[] = [];
  for (const path of requested) {
    if (isMaskPath(path)) paths.push(path);
    else violations.push({ field: "update_mask", description: `unknown or immutable path "${path}"` });
  }
  return paths;
}
