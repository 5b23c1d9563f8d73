import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { createContextKey, type HandlerContext } from "@connectrpc/connect";
import type { Kysely } from "kysely";
import type { CommonTables } from "../db/schema.ts";
import { inTransaction } from "../db/database.ts";
import { NotFoundError, PreconditionError, UnauthenticatedError } from "../errors.ts";
import { newUlid, ULID_PATTERN } from "../ulid.ts";

/** Principal is the authenticated caller: always exactly one merchant. */
export interface Principal {
  merchantId: string;
  keyId: string;
  /** How the audit trail names the caller. */
  actor: string;
  /** The merchant's service tier (merchants.tier): metrics and SLOs are per tier. */
  tier: string;
}

/** kPrincipal carries the Principal from the auth interceptor to handlers. */
export const kPrincipal = createContextKey<Principal | undefined>(undefined, { description: "principal" });

/**
 * API keys look like `srk_<merchant id>_<key id>_<secret>`. The merchant id
 * inside the key lets verification read one row on the merchant's own shard
 * (no cross-shard lookup table); only SHA-256(secret) is stored, and the
 * 256-bit random secret makes a slow password hash unnecessary.
 */
const KEY_PATTERN = /^srk_([0-9A-HJKMNP-TV-Z]{26})_([0-9A-HJKMNP-TV-Z]{26})_([A-Za-z0-9_-]{43})$/;

/** createMerchant adds a merchant and its first API key, and returns the key once. */
export async function createMerchant(
  db: Kysely<CommonTables>,
  name: string,
): Promise<{ merchantId: string; apiKey: string; keyId: string }> {
  const merchantId = newUlid();
  return db.transaction().execute(async (trx) => {
    await trx.insertInto("merchants").values({ merchant_id: merchantId, name, created_at: new Date() }).execute();
    const { apiKey, keyId } = await createApiKey(trx, merchantId, "initial key");
    return { merchantId, apiKey, keyId };
  });
}

/** createApiKey adds a key for a merchant and returns it; it cannot be shown again. */
export async function createApiKey(
  db: Kysely<CommonTables>,
  merchantId: string,
  label: string,
  createdBy: string | null = null,
): Promise<{ apiKey: string; keyId: string; createdAt: Date }> {
  const keyId = newUlid();
  const secret = randomBytes(32).toString("base64url");
  const createdAt = new Date();
  await db
    .insertInto("api_keys")
    .values({
      merchant_id: merchantId,
      key_id: keyId,
      secret_sha256: sha256(secret),
      label,
      created_at: createdAt,
      revoked_at: null,
      created_by: createdBy,
      revoked_by: null,
    })
    .execute();
  return { apiKey: `srk_${merchantId}_${keyId}_${secret}`, keyId, createdAt };
}

/**
 * merchantOfKey reads the merchant an API key names, without checking the
 * key: for decisions that may only refuse (early shedding), never grant.
 */
export function merchantOfKey(apiKey: string): string | undefined {
  return KEY_PATTERN.exec(apiKey)?.[1];
}

/** ApiKeyRow is a key as its merchant may see it: everything but the secret's hash. */
export interface ApiKeyRow {
  keyId: string;
  label: string;
  createdAt: Date;
  revokedAt: Date | null;
  /** Who created and revoked it: a Principal's actor ("api_key:<key id>") or "operator"; null when not recorded. */
  createdBy: string | null;
  revokedBy: string | null;
}

/** MAX_ACTIVE_KEYS bounds a merchant's active keys (ApiKeyService.CreateApiKey). */
export const MAX_ACTIVE_KEYS = 50;

/**
 * addApiKey adds a key to a merchant, up to MAX_ACTIVE_KEYS active ones
 * (else FAILED_PRECONDITION TOO_MANY_KEYS); it returns the key, whose secret
 * cannot be shown again. Key changes of one merchant take its merchants row
 * lock, so two at once cannot both pass a count.
 */
export async function addApiKey(
  db: Kysely<CommonTables>,
  merchantId: string,
  label: string,
  by: string,
): Promise<{ apiKey: string; key: ApiKeyRow }> {
  return inTransaction(db, async (trx) => {
    const active = await lockActiveKeys(trx, merchantId);
    if (active >= MAX_ACTIVE_KEYS) {
      throw new PreconditionError("TOO_MANY_KEYS", `at most ${MAX_ACTIVE_KEYS} API keys may be active at once: revoke one first`, {
        active: String(active),
      });
    }
    const { apiKey, keyId, createdAt } = await createApiKey(trx, merchantId, label, by);
    return { apiKey, key: { keyId, label, createdAt, revokedAt: null, createdBy: by, revokedBy: null } };
  });
}

/** findApiKey reads one of a merchant's keys. */
export async function findApiKey(db: Kysely<CommonTables>, merchantId: string, keyId: string): Promise<ApiKeyRow | undefined> {
  const row = await db
    .selectFrom("api_keys")
    .select(KEY_COLUMNS)
    .where("merchant_id", "=", merchantId)
    .where("key_id", "=", keyId)
    .executeTakeFirst();
  return row && toApiKeyRow(row);
}

/** listApiKeys reads a page of a merchant's keys, newest first (key ids are ULIDs), after the key id `before` if given. */
export async function listApiKeys(db: Kysely<CommonTables>, merchantId: string, limit: number, before?: string): Promise<ApiKeyRow[]> {
  let q = db.selectFrom("api_keys").select(KEY_COLUMNS).where("merchant_id", "=", merchantId);
  if (before !== undefined) q = q.where("key_id", "<", before);
  const rows = await q.orderBy("key_id", "desc").limit(limit).execute();
  return rows.map(toApiKeyRow);
}

/**
 * revokeApiKey disables a key; verifiers stop accepting it within their
 * cache TTL. It returns the key (as it was when already revoked) and whether
 * this call revoked it, or undefined when the merchant has no such key. The merchant's last active
 * key is refused (FAILED_PRECONDITION LAST_ACTIVE_KEY): nobody could call
 * for the merchant any more.
 */
export async function revokeApiKey(
  db: Kysely<CommonTables>,
  merchantId: string,
  keyId: string,
  by: string,
  now = new Date(),
): Promise<(ApiKeyRow & { revokedNow: boolean }) | undefined> {
  return inTransaction(db, async (trx) => {
    const active = await lockActiveKeys(trx, merchantId);
    const key = await findApiKey(trx, merchantId, keyId);
    if (!key || key.revokedAt !== null) return key && { ...key, revokedNow: false };
    // The key is active: if it is the only active one, it is the last.
    if (active === 1) {
      throw new PreconditionError(
        "LAST_ACTIVE_KEY",
        "this is the merchant's last active API key: create its successor before revoking it",
        {
          key_id: keyId,
        },
      );
    }
    await trx
      .updateTable("api_keys")
      .set({ revoked_at: now, revoked_by: by })
      .where("merchant_id", "=", merchantId)
      .where("key_id", "=", keyId)
      .where("revoked_at", "is", null)
      .execute();
    return { ...key, revokedAt: now, revokedBy: by, revokedNow: true };
  });
}

/**
 * lockActiveKeys takes the merchant's row lock (key changes of one merchant
 * go one at a time) and counts its active keys; a merchant that does not
 * exist is NOT_FOUND (an operator's tool may name any).
 */
async function lockActiveKeys(trx: Kysely<CommonTables>, merchantId: string): Promise<number> {
  const merchant = await trx.selectFrom("merchants").select("merchant_id").where("merchant_id", "=", merchantId).forUpdate().execute();
  if (merchant.length === 0) throw new NotFoundError("merchant", merchantId);
  const { active } = await trx
    .selectFrom("api_keys")
    .select((eb) => eb.fn.countAll<number>().as("active"))
    .where("merchant_id", "=", merchantId)
    .where("revoked_at", "is", null)
    .executeTakeFirstOrThrow();
  return Number(active);
}

const KEY_COLUMNS = ["key_id", "label", "created_at", "revoked_at", "created_by", "revoked_by"] as const;

function toApiKeyRow(row: Pick<CommonTables["api_keys"], (typeof KEY_COLUMNS)[number]>): ApiKeyRow {
  return {
    keyId: row.key_id,
    label: row.label,
    createdAt: row.created_at,
    revokedAt: row.revoked_at,
    createdBy: row.created_by,
    revokedBy: row.revoked_by,
  };
}

/** principalOf returns a handler's caller; the auth interceptor guarantees one on every non-public call. */
export function principalOf(ctx: HandlerContext): Principal {
  const principal = ctx.values.get(kPrincipal);
  if (!principal) throw new UnauthenticatedError("no credential");
  return principal;
}

export type KeyVerifier = (apiKey: string) => Promise<Principal>;

/**
 * createKeyVerifier checks keys against the database, caching successful
 * checks for cacheMs (so a revoked key is refused within that time) to keep
 * a primary-key read off every call's hot path. A busy key is read again
 * before its entry runs out (in the entry's last fifth, by the call that
 * notices, while the others are still answered from the cache), and
 * concurrent reads of one key are one read: a key at a thousand calls a
 * second never makes all of them queue for database connections at once,
 * which in a spike is what turned an expiry into seconds of stall.
 */
export function createKeyVerifier(db: Kysely<CommonTables>, cacheMs = 10_000, maxEntries = 10_000): KeyVerifier {
  const cache = new Map<string, { principal: Principal; expires: number }>();
  const reading = new Map<string, Promise<Principal>>();
  const read = (apiKey: string): Promise<Principal> => {
    let pending = reading.get(apiKey);
    if (!pending) {
      pending = lookUp(apiKey).finally(() => reading.delete(apiKey));
      reading.set(apiKey, pending);
    }
    return pending;
  };
  const lookUp = async (apiKey: string): Promise<Principal> => {
    const m = KEY_PATTERN.exec(apiKey);
    if (!m || !ULID_PATTERN.test(m[1]!) || !ULID_PATTERN.test(m[2]!)) {
      throw new UnauthenticatedError("malformed API key");
    }
    const [, merchantId, keyId, secret] = m as unknown as [string, string, string, string];
    // The tier comes along in the same round trip, from the same shard.
    const row = await db
      .selectFrom("api_keys")
      .select(["secret_sha256", "revoked_at"])
      .select((eb) => eb.selectFrom("merchants").select("tier").where("merchant_id", "=", merchantId).as("tier"))
      .where("merchant_id", "=", merchantId)
      .where("key_id", "=", keyId)
      .executeTakeFirst();
    if (!row || row.revoked_at !== null || !timingSafeEqual(row.secret_sha256, sha256(secret))) {
      cache.delete(apiKey);
      throw new UnauthenticatedError("invalid or revoked API key");
    }
    const principal: Principal = { merchantId, keyId, actor: `api_key:${keyId}`, tier: row.tier ?? "standard" };
    if (!cache.has(apiKey) && cache.size >= maxEntries) cache.delete(cache.keys().next().value!);
    cache.set(apiKey, { principal, expires: Date.now() + cacheMs });
    return principal;
  };
  return async (apiKey) => {
    const hit = cache.get(apiKey);
    const now = Date.now();
    if (hit && hit.expires > now) {
      // Read ahead; a failed read ahead is the next caller's to retry, or the expiry's to refuse.
      if (hit.expires - now < cacheMs / 5 && !reading.has(apiKey)) read(apiKey).catch(() => {});
      return hit.principal;
    }
    return read(apiKey);
  };
}

function sha256(value: string): Buffer {
  return createHash("sha256").update(value).digest();
}
