import { createHash } from "node:crypto";
import { create, fromBinary, toBinary, toJson, type DescMessage, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import type { Kysely, Transaction } from "kysely";
import type { CommonTables } from "../db/schema.ts";
import { deleteInBatches, ER_DUP_ENTRY, inTransaction, insertRows, mysqlErrno } from "../db/database.ts";
import { deferWrite } from "../db/deferred-writes.ts";
import { forEachShard } from "../db/shards.ts";
import { InvalidArgumentError, RequestIdMismatchError } from "../errors.ts";

export interface IdempotentCall<Req extends DescMessage, Res extends DescMessage> {
  merchantId: string;
  /** The client's request_id; empty means the call is not idempotent. */
  requestId: string;
  /** The RPC, e.g. "CatalogService.UpdateProduct": a key reused across methods is a mismatch. */
  method: string;
  requestSchema: Req;
  request: MessageShape<Req>;
  responseSchema: Res;
}

const REQUEST_ID_MAX = 128;

/**
 * idempotent makes a mutation safe to retry (AIP-155). Inside the caller's
 * transaction it first claims (merchant, request_id); a concurrent duplicate
 * blocks on that row until the first commits, then finds it. A claimed key
 * with the same request fingerprint returns the stored response; a different
 * fingerprint fails with REQUEST_ID_MISMATCH. If the mutation fails, the
 * claim rolls back with it, so a retry runs the mutation again.
 */
export async function idempotent<Req extends DescMessage, Res extends DescMessage>(
  trx: Transaction<CommonTables>,
  call: IdempotentCall<Req, Res>,
  run: () => Promise<MessageInitShape<Res>>,
): Promise<MessageShape<Res>> {
  if (call.requestId === "") return create(call.responseSchema, await run());
  if (call.requestId.length > REQUEST_ID_MAX) {
    throw new InvalidArgumentError([{ field: "request_id", description: `must be at most ${REQUEST_ID_MAX} characters` }]);
  }
  const fingerprint = requestFingerprint(call);
  try {
    await trx
      .insertInto("idempotency_keys")
      .values({
        merchant_id: call.merchantId,
        request_id: call.requestId,
        method: call.method,
        request_sha256: fingerprint,
        response: null,
        created_at: new Date(),
      })
      .execute();
  } catch (error) {
    if (mysqlErrno(error) !== ER_DUP_ENTRY) throw error;
    // The duplicate is committed (a failed first attempt would have freed the
    // key), and this is the transaction's first consistent read, so a plain
    // read sees it. A locking read here would deadlock racing retries.
    const row = await trx
      .selectFrom("idempotency_keys")
      .select(["method", "request_sha256", "response"])
      .where("merchant_id", "=", call.merchantId)
      .where("request_id", "=", call.requestId)
      .executeTakeFirstOrThrow();
    if (row.method !== call.method || !row.request_sha256.equals(fingerprint) || row.response === null) {
      throw new RequestIdMismatchError(call.requestId);
    }
    return fromBinary(call.responseSchema, row.response);
  }
  const response = create(call.responseSchema, await run());
  // Deferred: the stored response rides with the COMMIT (deferred-writes.ts).
  const store = trx
    .updateTable("idempotency_keys")
    .set({ response: Buffer.from(toBinary(call.responseSchema, response)) })
    .where("merchant_id", "=", call.merchantId)
    .where("request_id", "=", call.requestId)
    .compile();
  await deferWrite(trx, store);
  return response;
}

/**
 * idempotentMutation runs a mutation as ONE transaction with its idempotency
 * claim: the claim, the mutation's writes, its audit entries and outbox
 * events commit together (a deadlock victim is retried whole).
 */
export function idempotentMutation<DB extends CommonTables, Req extends DescMessage, Res extends DescMessage>(
  db: Kysely<DB>,
  call: IdempotentCall<Req, Res>,
  run: (trx: Transaction<DB>) => Promise<MessageInitShape<Res>>,
): Promise<MessageShape<Res>> {
  // Transaction<DB> is a Transaction<CommonTables> for every DB with those tables; TypeScript cannot see it for a type parameter.
  return inTransaction(db, (trx) => idempotent(trx as unknown as Transaction<CommonTables>, call, () => run(trx)));
}

/**
 * claimedRequestIds tells which of a merchant's request ids are claimed
 * already, with one plain read. It and claimWithResponses serve calls that
 * run together in one transaction (the orders' hot-SKU batches): a claimed
 * call goes back to idempotentMutation, which answers it from the key.
 */
export async function claimedRequestIds(trx: Transaction<CommonTables>, merchantId: string, requestIds: string[]): Promise<Set<string>> {
  if (requestIds.length === 0) return new Set();
  const rows = await trx
    .selectFrom("idempotency_keys")
    .select("request_id")
    .where("merchant_id", "=", merchantId)
    .where("request_id", "in", requestIds)
    .execute();
  return new Set(rows.map((r) => r.request_id));
}

/**
 * claimWithResponses claims the keys of calls that succeeded together in
 * the caller's transaction, each stored with its response at once: one
 * deferred multi-row insert instead of a claim and an update per call. A
 * call that failed claims nothing, as with idempotent. A key claimed since
 * claimedRequestIds read it fails the transaction with ER_DUP_ENTRY (at its
 * next statement), so the caller must be ready to run its calls again one
 * by one through idempotentMutation.
 */
export async function claimWithResponses<Req extends DescMessage, Res extends DescMessage>(
  trx: Transaction<CommonTables>,
  claims: { call: IdempotentCall<Req, Res>; response: MessageShape<Res> }[],
  at = new Date(),
): Promise<void> {
  const rows = claims
    .filter(({ call }) => call.requestId !== "")
    .map(({ call, response }) => ({
      merchant_id: call.merchantId,
      request_id: call.requestId,
      method: call.method,
      request_sha256: requestFingerprint(call),
      response: Buffer.from(toBinary(call.responseSchema, response)),
      created_at: at,
    }));
  await insertRows(trx, "idempotency_keys", rows, { deferred: true });
}

/** requestFingerprint hashes the method and the request without its request_id, with map keys sorted. */
function requestFingerprint<Req extends DescMessage>(call: IdempotentCall<Req, DescMessage>): Buffer {
  const json = toJson(call.requestSchema, call.request) as Record<string, unknown>;
  delete json["requestId"];
  return createHash("sha256").update(call.method).update("\n").update(stableStringify(json)).digest();
}

function stableStringify(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(stableStringify).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const entries = Object.keys(value)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${stableStringify((value as Record<string, unknown>)[k])}`);
    return `{${entries.join(",")}}`;
  }
  return JSON.stringify(value);
}

/**
 * pruneIdempotencyKeys deletes the stored requests older than `before`, batch
 * rows per statement so none holds locks for long (AIP-155 promises a
 * retry window of at least 24 hours; callers keep them longer). It is a
 * maintenance sweep over all merchants, run against each shard target in
 * turn (forEachShard: on Vitess each shard on its own, no scatter).
 */
export async function pruneIdempotencyKeys(db: Kysely<CommonTables>, before: Date, batch: number): Promise<number> {
  const perShard = await forEachShard(db, (shardDb) =>
    deleteInBatches(() => shardDb.deleteFrom("idempotency_keys").where("created_at", "<", before).limit(batch).executeTakeFirst(), batch),
  );
  return perShard.reduce((a, b) => a + b, 0);
}
