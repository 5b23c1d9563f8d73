/**
 * The tamper-evident audit chain over product_changes, one chain per merchant.
 *
 * Writers never hash: a chain computed at write time would serialize every
 * write of a merchant on its chain head. Instead a sealer (run by the bulk
 * worker, services/bulk/src/worker.ts) seals committed rows afterwards: per
 * merchant, in one transaction holding the merchant's audit_chain_heads row,
 * it gives the oldest unsealed rows the next positions (seal_seq) and
 * row_hash = SHA-256(prev_hash || canonical content). The chain order is the
 * seal order, not change_id order: a row that commits late is sealed late.
 *
 * An unsealed row has seal_seq 0 and both hashes 32 zero bytes (the columns'
 * defaults: writers do not name them), so sealing rewrites the row in place
 * instead of growing it: a grown row is moved, which cost MariaDB about 9
 * times the redo (migrations 2026_12_04_140000 and 150000).
 *
 * The database user of the services may only INSERT rows and UPDATE the three
 * seal columns (tools/db-grants.ts), so rewriting history takes the admin
 * user, and verifyAuditChain then points at what was changed or removed.
 */
import { createHash } from "node:crypto";
import { sql } from "kysely";
import { ER_DUP_ENTRY, forEachShard, inTransaction, insertRows, jsonColumn, mysqlErrno } from "@stockroom/common/db";
import { canonicalJson, ulidFloor, unavailableBackend } from "@stockroom/common";
import { CHANGE_COLUMNS, type CatalogDb, type CatalogTx, type ProductChangeRow } from "./store.ts";

/** APPEND_ONLY_TABLES: tables the service user may not UPDATE or DELETE, with the columns it may still update. */
export const APPEND_ONLY_TABLES: Readonly<Record<string, readonly string[]>> = {
  product_changes: ["seal_seq", "prev_hash", "row_hash"],
};

/** GENESIS_HASH is the prev_hash of a merchant's first sealed row. */
export const GENESIS_HASH = Buffer.alloc(32);

/** UNSEALED is an unsealed row's seal_seq; positions start at 1. */
export const UNSEALED = 0;

/** The content columns of a row, in the order they are hashed (store.ts CHANGE_COLUMNS). */
const CONTENT_COLUMNS = CHANGE_COLUMNS;

/**
 * A row as read for hashing: mysql2 may give JSON as text or parsed, BIGINT
 * as number or string. format is absent where a caller predates it (= 1).
 */
type ContentRow = { [K in Exclude<(typeof CONTENT_COLUMNS)[number], "format">]: unknown } & { format?: unknown };

/**
 * canonicalContent serializes a row's content columns the same way whatever
 * shape the driver returned them in: JSON columns are parsed and re-written
 * with sorted keys, version is a decimal string, created_at is epoch ms.
 */
export function canonicalContent(row: ContentRow): string {
  const json = (value: unknown) => (value === null || value === undefined ? null : jsonColumn<unknown>(value));
  const at = row.created_at instanceof Date ? row.created_at.getTime() : new Date(row.created_at as string | number).getTime();
  const format = Number(row.format ?? 1);
  return canonicalJson([
    // Format 1 rows (whole products) hash as they did before format existed; a
    // later format names itself, so changing a row's format breaks its hash.
    format === 1 ? "stockroom.audit.v1" : `stockroom.audit.v${format}`,
    row.merchant_id,
    row.change_id,
    row.product_id,
    row.sku,
    row.change_type,
    BigInt(row.version as number | string).toString(),
    json(row.changed_fields),
    json(row.before_state),
    json(row.after_state),
    row.actor,
    row.source_kind,
    row.source_ref,
    row.request_id,
    row.reason,
    at,
  ]);
}

/** rowHash is SHA-256(prev_hash || canonical content). */
export function rowHash(prevHash: Uint8Array, row: ContentRow): Buffer {
  return createHash("sha256").update(prevHash).update(canonicalContent(row), "utf8").digest();
}

export interface SealOptions {
  /** Only rows older than this are sealed, so in-flight transactions have committed (default 30 s). */
  lagMs?: number;
  /** Rows sealed per merchant per transaction (default 500). */
  batch?: number;
  /** Merchants looked at per run (default 1,000). */
  merchants?: number;
  /** Ends the run between batches (a worker shutting down). */
  signal?: AbortSignal;
}

export interface SealResult {
  /** Merchants with rows to seal that this run looked at. */
  merchants: number;
  /** Rows sealed. */
  sealed: number;
  /** Merchants skipped because another sealer held their chain head. */
  busy: number;
  /** Merchants whose sealing failed; the others were still sealed. (A database that is away rejects the run instead.) */
  failed: { merchantId: string; error: unknown }[];
}

/**
 * sealAuditChains seals the unsealed rows older than lagMs of every merchant
 * that has some. Merchants take turns one batch at a time, so one merchant's
 * 500,000-row job does not hold up the others. Safe to run in many processes:
 * a merchant whose head another sealer holds is skipped (SKIP LOCKED).
 *
 * Finding the merchants is the one statement that names none, so the whole
 * seal runs against each shard target in turn (forEachShard): on Vitess each
 * shard finds and seals its own merchants, no scatter; on MySQL/MariaDB the
 * database is the one target.
 */
export async function sealAuditChains(db: CatalogDb, options: SealOptions = {}): Promise<SealResult> {
  const perShard = await forEachShard(db, (shardDb) => sealShard(shardDb, options), { signal: options.signal });
  const result: SealResult = { merchants: 0, sealed: 0, busy: 0, failed: [] };
  for (const r of perShard) {
    if (!r) continue; // not reached: stopped
    result.merchants += r.merchants;
    result.sealed += r.sealed;
    result.busy += r.busy;
    result.failed.push(...r.failed);
  }
  return result;
}

/** sealShard seals the chains of the merchants on one shard target (all of them on MySQL/MariaDB). */
async function sealShard(db: CatalogDb, options: SealOptions): Promise<SealResult> {
  const lagMs = options.lagMs ?? 30_000;
  const batch = options.batch ?? 500;
  const cutoff = new Date(Date.now() - lagMs);
  const found = await sealableMerchants(db, ulidFloor(cutoff.getTime()), options.merchants ?? 1000, options.signal);
  const result: SealResult = { merchants: found.length, sealed: 0, busy: 0, failed: [] };
  let pending = found;
  for (const merchantId of pending) if (!options.signal?.aborted) await ensureHead(db, merchantId);
  while (pending.length > 0) {
    const next: string[] = [];
    for (const merchantId of pending) {
      if (options.signal?.aborted) return result;
      // One merchant's failure (a row gone mid-seal, say) must not stop the others' chains. A database that is
      // away stops the round: every other merchant would fail alike, each after its own connect timeout.
      const sealed = await sealBatch(db, merchantId, cutoff, batch).catch((error: unknown) => {
        if (unavailableBackend(error)) throw error;
        result.failed.push({ merchantId, error });
        return 0;
      });
      if (sealed === undefined) result.busy++;
      else result.sealed += sealed;
      if (sealed === batch) next.push(merchantId);
    }
    pending = next;
  }
  return result;
}

/** DIVES: merchants found one index dive each before sealableMerchants reads the rest's rows. */
const DIVES = 64;

/**
 * sealableMerchants finds up to limit merchants with unsealed rows older than
 * cutoffId (change_id is a ULID of the change's time or a little later).
 *
 * `SELECT DISTINCT merchant_id … WHERE seal_seq = 0` reads the index
 * entry of every unsealed row: 100-150 ms of MariaDB CPU with 200,000 of
 * them, run by every worker every few seconds while a large job writes rows
 * younger than the lag, which it cannot seal yet. MariaDB did not skip-scan
 * it (no loose index scan when seal_seq was NULL; a recursive CTE's
 * correlated step gets ref access on seal_seq alone, scanning again). So the
 * first DIVES merchants are found one statement each: the first unsealed row
 * after the previous merchant, in idx_product_changes_unsealed (seal_seq,
 * merchant_id, change_id) order, which is also that merchant's oldest, so it
 * tells whether the merchant has anything old enough. That costs one index
 * dive per merchant (about 0.1 ms of MariaDB CPU, 5 ms in all for 31
 * merchants and 200,000 rows). Past DIVES merchants (many merchants, fewer
 * rows each, where a dive costs more than the rows it skips), the rest are
 * found by the one scan, from where the dives stopped.
 */
async function sealableMerchants(db: CatalogDb, cutoffId: string, limit: number, signal?: AbortSignal): Promise<string[]> {
  const found: string[] = [];
  let after = "";
  for (let dives = 0; dives < DIVES; dives++) {
    if (found.length >= limit || signal?.aborted) return found;
    const next = (
      await sql<{ merchant_id: string; change_id: string }>`
        SELECT merchant_id, change_id FROM product_changes FORCE INDEX (idx_product_changes_unsealed)
        WHERE seal_seq = ${UNSEALED} AND merchant_id > ${after}
        ORDER BY merchant_id, change_id
        LIMIT 1`.execute(db)
    ).rows[0];
    if (!next) return found;
    if (next.change_id < cutoffId) found.push(next.merchant_id);
    after = next.merchant_id;
  }
  const rest = await sql<{ merchant_id: string }>`
    SELECT DISTINCT merchant_id FROM product_changes FORCE INDEX (idx_product_changes_unsealed)
    WHERE seal_seq = ${UNSEALED} AND merchant_id > ${after} AND change_id < ${cutoffId}
    ORDER BY merchant_id
    LIMIT ${limit - found.length}`.execute(db);
  return [...found, ...rest.rows.map((r) => r.merchant_id)];
}

/** ensureHead creates the merchant's chain head at position 0 if it has none. */
async function ensureHead(db: CatalogDb, merchantId: string): Promise<void> {
  const head = await db.selectFrom("audit_chain_heads").select("seal_seq").where("merchant_id", "=", merchantId).executeTakeFirst();
  if (head) return;
  try {
    await insertRows(db, "audit_chain_heads", [{ merchant_id: merchantId, seal_seq: 0, head_hash: GENESIS_HASH, sealed_at: new Date() }]);
  } catch (error) {
    if (mysqlErrno(error) !== ER_DUP_ENTRY) throw error; // another sealer created it
  }
}

/**
 * sealBatch seals up to batch rows of one merchant in one transaction and
 * returns how many, or undefined if another sealer holds the head. READ
 * COMMITTED: the rows are read after the head lock is taken, so a sealer that
 * waited for another sees what that one sealed.
 */
function sealBatch(db: CatalogDb, merchantId: string, cutoff: Date, batch: number): Promise<number | undefined> {
  return inTransaction(
    db,
    async (trx) => {
      const head = await trx
        .selectFrom("audit_chain_heads")
        .select(["seal_seq", "head_hash"])
        .where("merchant_id", "=", merchantId)
        .forUpdate()
        .skipLocked()
        .executeTakeFirst();
      if (!head) return undefined;
      // FORCE INDEX: with ORDER BY … LIMIT the optimizer tends to walk the
      // primary key from the merchant's first change, through every sealed row.
      // idx_product_changes_unsealed (seal_seq, merchant_id, + change_id from
      // the primary key) reads exactly the unsealed rows, in change_id order.
      const rows = (
        await sql<{ [K in (typeof CONTENT_COLUMNS)[number]]: ProductChangeRow[K] }>`
          SELECT ${sql.join(CONTENT_COLUMNS.map((c) => sql.ref(c)))}
          FROM product_changes FORCE INDEX (idx_product_changes_unsealed)
          WHERE merchant_id = ${merchantId} AND seal_seq = ${UNSEALED} AND created_at < ${cutoff}
          ORDER BY change_id
          LIMIT ${batch}`.execute(trx)
      ).rows;
      if (rows.length === 0) return 0;
      let seq = Number(head.seal_seq);
      let prev: Buffer = Buffer.from(head.head_hash);
      const seals = rows.map((row) => {
        const hash = rowHash(prev, row);
        const seal = { changeId: row.change_id, seq: ++seq, prev, hash };
        prev = hash;
        return seal;
      });
      await writeSeals(trx, merchantId, seals);
      await trx
        .updateTable("audit_chain_heads")
        .set({ seal_seq: seq, head_hash: prev, sealed_at: new Date() })
        .where("merchant_id", "=", merchantId)
        .execute();
      return rows.length;
    },
    { isolation: "read committed" },
  );
}

interface Seal {
  changeId: string;
  seq: number;
  prev: Buffer;
  hash: Buffer;
}

/**
 * writeSeals sets the seal columns of many rows with one UPDATE … CASE per
 * 200 rows: it needs only UPDATE on those columns, and a row that is gone or
 * already sealed fails the batch instead of being inserted or overwritten.
 */
async function writeSeals(trx: CatalogTx, merchantId: string, seals: Seal[]): Promise<void> {
  for (let i = 0; i < seals.length; i += 200) {
    const part = seals.slice(i, i + 200);
    const ids = part.map((s) => s.changeId);
    const cases = (value: (s: Seal) => unknown) =>
      sql.join(
        part.map((s) => sql`WHEN ${s.changeId} THEN ${value(s)}`),
        sql` `,
      );
    const result = await sql`
      UPDATE product_changes
      SET seal_seq = CASE change_id ${cases((s) => s.seq)} END,
          prev_hash = CASE change_id ${cases((s) => s.prev)} END,
          row_hash = CASE change_id ${cases((s) => s.hash)} END
      WHERE merchant_id = ${merchantId} AND change_id IN (${sql.join(ids)}) AND seal_seq = ${UNSEALED}`.execute(trx);
    if (Number(result.numAffectedRows ?? 0n) !== part.length) {
      throw new Error(`audit seal of merchant ${merchantId}: ${part.length} rows expected, ${result.numAffectedRows} updated`);
    }
  }
}

export type AuditProblemKind =
  /** Sealed positions with no row: sealed entries were deleted. */
  | "missing"
  /** The row's content no longer hashes to its row_hash: it was changed after sealing. */
  | "content_changed"
  /** The row's prev_hash is not the row_hash of the entry before it. */
  | "broken_link"
  /** seal_seq is set but a hash is not. */
  | "incomplete_seal"
  /** The row sits beyond the merchant's chain head. */
  | "beyond_head"
  /** Another row holds the same chain position. */
  | "duplicate_position"
  /** The chain head does not match the last sealed row. */
  | "head_mismatch"
  /** A product's current version has no audit entry. */
  | "no_audit_entry";

export interface AuditProblem {
  kind: AuditProblemKind;
  /** The chain position concerned (the first one, for a range), if any. */
  sealSeq?: number;
  changeId?: string;
  sku?: string;
  detail: string;
}

export interface AuditVerification {
  merchantId: string;
  /** Sealed rows found. */
  sealed: number;
  /** Rows not sealed yet (they are checked once sealed). */
  unsealed: number;
  /** The position the chain head records. */
  headSeq: number;
  problems: AuditProblem[];
}

/**
 * verifyAuditChain walks a merchant's sealed rows in seal order and checks
 * that positions are consecutive, that each row links to the one before,
 * that each row's content still hashes to its row_hash, and that the last one
 * is the chain head. It also reports products whose current version has no
 * audit entry (a change that bypassed the audit, or whose entry was deleted
 * before it was sealed). Every statement names the merchant.
 */
export function verifyAuditChain(db: CatalogDb, merchantId: string, options: { pageSize?: number } = {}): Promise<AuditVerification> {
  // One REPEATABLE READ snapshot: a sealer committing meanwhile (rows and head
  // together) is either wholly seen or not at all.
  return inTransaction(db, (trx) => verifyIn(trx, merchantId, options.pageSize ?? 1000), { isolation: "repeatable read" });
}

async function verifyIn(db: CatalogTx, merchantId: string, pageSize: number): Promise<AuditVerification> {
  const problems: AuditProblem[] = [];
  const headRow = await db
    .selectFrom("audit_chain_heads")
    .select(["seal_seq", "head_hash"])
    .where("merchant_id", "=", merchantId)
    .executeTakeFirst();
  const headSeq = headRow ? Number(headRow.seal_seq) : 0;
  let expected = 1;
  let prevHash: Buffer | undefined = GENESIS_HASH;
  let sealed = 0;
  // Pages follow (seal_seq, change_id): two rows at one position must not fall between pages.
  let after = { seq: 0, changeId: "" };
  for (;;) {
    const rows = await db
      .selectFrom("product_changes")
      .select([...CONTENT_COLUMNS, "seal_seq", "prev_hash", "row_hash"])
      .where("merchant_id", "=", merchantId)
      .where((eb) =>
        eb.or([eb("seal_seq", ">", after.seq), eb.and([eb("seal_seq", "=", after.seq), eb("change_id", ">", after.changeId)])]),
      )
      .where("seal_seq", ">", UNSEALED)
      .orderBy("seal_seq")
      .orderBy("change_id")
      .limit(pageSize)
      .execute();
    for (const row of rows) {
      sealed++;
      const seq = Number(row.seal_seq);
      const at = { sealSeq: seq, changeId: row.change_id, sku: row.sku };
      after = { seq, changeId: row.change_id };
      if (seq < expected) {
        // The index on positions is not unique (unsealed rows share 0): a second row here was put there.
        problems.push({ kind: "duplicate_position", ...at, detail: `a second entry at position ${seq}` });
        continue;
      }
      if (seq > expected) {
        problems.push({ kind: "missing", sealSeq: expected, detail: `sealed entries ${range(expected, seq - 1)} are missing` });
        prevHash = undefined; // the entry this one links to is gone: nothing to compare with
      }
      if (seq > headSeq) problems.push({ kind: "beyond_head", ...at, detail: `sealed at ${seq}, beyond the chain head at ${headSeq}` });
      // An unsealed row's hashes are zero (NULL if written before 2026_12_04_140000): a row_hash of zero was never set.
      if (!row.prev_hash || !row.row_hash || row.row_hash.equals(GENESIS_HASH)) {
        problems.push({ kind: "incomplete_seal", ...at, detail: "seal_seq is set but prev_hash or row_hash is not" });
        prevHash = undefined;
      } else {
        if (prevHash && !prevHash.equals(row.prev_hash)) {
          problems.push({
            kind: "broken_link",
            ...at,
            detail: `prev_hash ${hex(row.prev_hash)} is not the hash of entry ${seq - 1} (${hex(prevHash)})`,
          });
        }
        if (!rowHash(row.prev_hash, row).equals(row.row_hash)) {
          problems.push({
            kind: "content_changed",
            ...at,
            detail: "the entry's content does not match its row_hash: it changed after sealing",
          });
        }
        prevHash = Buffer.from(row.row_hash);
      }
      expected = seq + 1;
    }
    if (rows.length < pageSize) break;
  }
  const last = expected - 1;
  if (!headRow) {
    if (sealed > 0) problems.push({ kind: "head_mismatch", detail: `${sealed} sealed entries but no chain head` });
  } else if (last < headSeq) {
    problems.push({
      kind: "missing",
      sealSeq: last + 1,
      detail: `sealed entries ${range(last + 1, headSeq)} are missing (the chain ends before its head)`,
    });
  } else if (last === headSeq && prevHash && !prevHash.equals(headRow.head_hash)) {
    problems.push({
      kind: "head_mismatch",
      sealSeq: last,
      detail: `the head hash ${hex(headRow.head_hash)} is not the hash of entry ${last} (${hex(prevHash)})`,
    });
  }
  const unsealed = await db
    .selectFrom("product_changes")
    .select((eb) => eb.fn.countAll<number | string>().as("n"))
    .where("merchant_id", "=", merchantId)
    .where("seal_seq", "=", UNSEALED)
    .executeTakeFirstOrThrow();
  const unaudited = await sql<{ sku: string; version: number | string }>`
    SELECT p.sku, p.version FROM products p
    LEFT JOIN product_changes c ON c.merchant_id = p.merchant_id AND c.sku = p.sku AND c.version = p.version AND c.change_type <> 'deleted'
    WHERE p.merchant_id = ${merchantId} AND c.change_id IS NULL
    ORDER BY p.sku LIMIT 1000`.execute(db);
  for (const p of unaudited.rows) {
    problems.push({
      kind: "no_audit_entry",
      sku: p.sku,
      detail: `product "${p.sku}" is at version ${p.version}, which has no audit entry`,
    });
  }
  return { merchantId, sealed, unsealed: Number(unsealed.n), headSeq, problems };
}

function range(from: number, to: number): string {
  return from === to ? String(from) : `${from}..${to}`;
}

function hex(b: Uint8Array): string {
  return `${Buffer.from(b).toString("hex").slice(0, 16)}…`;
}
