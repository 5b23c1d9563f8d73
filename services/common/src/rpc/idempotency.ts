import { createHash } from "node:crypto";
import { create, fromBinary, toBinary, toJson, type DescMessage, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import type { Kysely, Transaction } from "kysely";
import type { CommonTables } from "../db/schema.ts";
import { deleteInBatches, ER_DUP_ENTRY, inTransaction, insertRows, mysqlErrno, runStatement } from "../db/database.ts";
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

/** The statements of the per-call paths: plain SQL (runStatement), not built by Kysely each time. */
const CLAIM =
  "insert into `idempotency_keys` (`merchant_id`, `request_id`, `method`, `request_sha256`, `response`, `created_at`) values (?, ?, ?, ?, ?, ?)";
const STORE_RESPONSE = "update `idempotency_keys` set `response` = ? where `merchant_id` = ? and `request_id` = ?";
const FIND_CLAIM = "select `method`, `request_sha256`, `response` from `idempotency_keys` where `merchant_id` = ? and `request_id` = ?";
/** FIND_CLAIM for several request_ids: followed by the list of their placeholders. */
const FIND_CLAIMS =
  "select `request_id`, `method`, `request_sha256`, `response` from `idempotency_keys` where `merchant_id` = ? and `request_id` in";

/**
 * idempotent makes a mutation safe to retry (AIP-155) inside a transaction
 * the caller runs. It first claims (merchant, request_id); a concurrent
 * duplicate blocks on that row until the first commits, then finds it. A
 * claimed key with the same request fingerprint returns the stored response;
 * a different fingerprint fails with REQUEST_ID_MISMATCH. If the mutation
 * fails, the claim rolls back with it, so a retry runs the mutation again.
 * (idempotentMutation, which runs the transaction itself, claims at the
 * COMMIT instead, saving a round trip.)
 */
export async function idempotent<Req extends DescMessage, Res extends DescMessage>(
  trx: Transaction<CommonTables>,
  call: IdempotentCall<Req, Res>,
  run: () => Promise<MessageInitShape<Res>>,
): Promise<MessageShape<Res>> {
  if (call.requestId === "") return create(call.responseSchema, await run());
  const fingerprint = requestFingerprint(call);
  try {
    await runStatement(trx, CLAIM, [call.merchantId, call.requestId, call.method, fingerprint, null, new Date()]);
  } catch (error) {
    if (mysqlErrno(error) !== ER_DUP_ENTRY) throw error;
    // The duplicate is committed (a failed first attempt would have freed the
    // key), and this is the transaction's first consistent read, so a plain
    // read sees it. A locking read here would deadlock racing retries.
    return replay(call, fingerprint, await findClaim(trx, call));
  }
  const response = create(call.responseSchema, await run());
  // Deferred: the stored response rides with the COMMIT (deferred-writes.ts).
  await deferWrite(trx, {
    sql: STORE_RESPONSE,
    parameters: [Buffer.from(toBinary(call.responseSchema, response)), call.merchantId, call.requestId],
  });
  return response;
}

/**
 * idempotentMutation runs a mutation as ONE transaction with its idempotency
 * key (AIP-155): the key with the stored response, the mutation's writes,
 * its audit entries and outbox events commit together (a deadlock victim is
 * retried whole). The key is claimed at the COMMIT, where it rides with the
 * mutation's deferred writes, not by a statement of its own before the
 * mutation: one round trip fewer per call. So a duplicate runs the mutation
 * too, and what stops it is the key: a duplicate of a committed call fails
 * (the key is taken, or the mutation no longer applies, e.g. its etag is
 * stale) and rolls back; a duplicate racing an uncommitted first attempt
 * queues on the rows the first holds, or on its key at the COMMIT. Whenever
 * the transaction fails, a committed key for the request_id answers instead:
 * the stored response if the fingerprint matches, else REQUEST_ID_MISMATCH.
 * A failed first attempt commits no key, so a retry runs the mutation again.
 */
export async function idempotentMutation<DB extends CommonTables, Req extends DescMessage, Res extends DescMessage>(
  db: Kysely<DB>,
  call: IdempotentCall<Req, Res>,
  run: (trx: Transaction<DB>) => Promise<MessageInitShape<Res>>,
): Promise<MessageShape<Res>> {
  if (call.requestId === "") return inTransaction(db, async (trx) => create(call.responseSchema, await run(trx)));
  const fingerprint = requestFingerprint(call);
  try {
    return await inTransaction(db, async (trx) => {
      const response = create(call.responseSchema, await run(trx));
      const stored = Buffer.from(toBinary(call.responseSchema, response));
      // Deferred, and last: a taken key fails the COMMIT it rides with, and the whole transaction rolls back.
      await deferWrite(trx, { sql: CLAIM, parameters: [call.merchantId, call.requestId, call.method, fingerprint, stored, new Date()] });
      return response;
    });
  } catch (error) {
    // A fresh read after the rollback sees the key a concurrent first attempt committed.
    // Should it fail as well, the mutation's own error is the better answer.
    const claim = await findClaim(db, call).catch(() => undefined);
    if (!claim) throw error;
    return replay(call, fingerprint, claim);
  }
}

/** What storedResponses found for a call: its stored response, the error to answer it with, or nothing (a free or empty request_id). */
export type StoredAnswer<Res extends DescMessage> = { response: MessageShape<Res> } | { error: Error } | undefined;

/**
 * storedResponses answers calls of one merchant from their request_ids'
 * keys without running them, with one read of all the keys: for each call,
 * the stored response if its key holds this same request, the
 * REQUEST_ID_MISMATCH error if it holds another, nothing if the request_id
 * is free (or empty). A plain read, which never waits on a lock: for a path
 * that refuses calls without running them (orders for a SKU known to be
 * sold out), so that the retry of a call that did commit still gets its
 * answer. The answers are in the order of the calls.
 */
export async function storedResponses<Req extends DescMessage, Res extends DescMessage>(
  // biome-ignore lint/suspicious/noExplicitAny: plain SQL on any database with the common tables
  db: Kysely<any>,
  calls: readonly IdempotentCall<Req, Res>[],
): Promise<StoredAnswer<Res>[]> {
  const keyed = calls.filter((c) => c.requestId !== "");
  if (keyed.length === 0) return calls.map(() => undefined);
  const merchantId = keyed[0]!.merchantId;
  if (keyed.some((c) => c.merchantId !== merchantId)) throw new Error("storedResponses reads the keys of one merchant's calls");
  const ids = [...new Set(keyed.map((c) => c.requestId))];
  const { rows } = await runStatement<Claim & { request_id: string }>(db, `${FIND_CLAIMS} (${ids.map(() => "?").join(", ")})`, [
    merchantId,
    ...ids,
  ]);
  // The column compares as utf8mb4_bin does, which ignores trailing spaces: so does the lookup.
  const claims = new Map(rows.map((r) => [padless(r.request_id), r]));
  return calls.map((call) => {
    const claim = call.requestId === "" ? undefined : claims.get(padless(call.requestId));
    if (!claim) return undefined;
    try {
      return { response: replay(call, requestFingerprint(call), claim) };
    } catch (error) {
      return { error: error as Error };
    }
  });
}

const padless = (s: string) => s.replace(/ +$/, "");

interface Claim {
  method: string;
  request_sha256: Buffer;
  response: Buffer | null;
}

/** findClaim reads a request_id's key, if it is taken. */
async function findClaim(
  // biome-ignore lint/suspicious/noExplicitAny: plain SQL on any database with the common tables
  db: Kysely<any> | Transaction<any>,
  call: IdempotentCall<DescMessage, DescMessage>,
): Promise<Claim | undefined> {
  const { rows } = await runStatement<Claim>(db, FIND_CLAIM, [call.merchantId, call.requestId]);
  return rows[0];
}

/** replay answers a duplicate with the stored response of its request_id, or REQUEST_ID_MISMATCH if the key served another request. */
function replay<Res extends DescMessage>(
  call: IdempotentCall<DescMessage, Res>,
  fingerprint: Buffer,
  claim: Claim | undefined,
): MessageShape<Res> {
  if (!claim || claim.method !== call.method || !claim.request_sha256.equals(fingerprint) || claim.response === null) {
    throw new RequestIdMismatchError(call.requestId);
  }
  return fromBinary(call.responseSchema, claim.response);
}

/**
 * claimWithResponses claims the keys of calls that succeeded together in
 * the caller's transaction, each stored with its response at once: one
 * deferred multi-row insert instead of a claim and an update per call. A
 * call that failed claims nothing, as with idempotent. They are claimed at
 * the COMMIT, as idempotentMutation claims (64 or more at once, in
 * insertRows' prepared blocks): a key claimed already fails the
 * transaction with ER_DUP_ENTRY, so the caller must be ready to run its
 * calls again one by one through idempotentMutation, which answers a
 * claimed one from its key. This serves calls that run together in one
 * transaction (the orders' hot-SKU batches).
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

/**
 * requestFingerprint hashes the method and the request without its
 * request_id, with map keys sorted; a request_id too long to store is
 * INVALID_ARGUMENT.
 */
function requestFingerprint<Req extends DescMessage>(call: IdempotentCall<Req, DescMessage>): Buffer {
  if (call.requestId.length > REQUEST_ID_MAX) {
    throw new InvalidArgumentError([{ field: "request_id", description: `must be at most ${REQUEST_ID_MAX} characters` }]);
  }
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
