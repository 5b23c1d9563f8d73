/**
 * The privileges of the services' database user: plain DML on every table,
 * except append-only tables (the audit trail), which get SELECT, INSERT and
 * UPDATE of named columns only, so no service code path (or SQL injection)
 * can rewrite or delete history. Migrations run as a separate admin user.
 */
import { sql, type Kysely } from "kysely";

export interface GrantTarget {
  /** The database (Vitess keyspace) the services use. */
  database: string;
  user: string;
  /** The account's host part; default "%". */
  host?: string;
  /** Append-only tables, each with the columns the user may still UPDATE. */
  appendOnly: Readonly<Record<string, readonly string[]>>;
}

export interface GrantPlan {
  /** REVOKEs of privileges beyond the plan, then the GRANTs, in order. */
  statements: string[];
  /** What the statements cannot fix, such as a database-wide UPDATE that overrides table grants. */
  warnings: string[];
}

const DML = ["SELECT", "INSERT", "UPDATE", "DELETE"];
/** Privileges that, held on the whole database or server, defeat an append-only table. */
const WIDE = ["UPDATE", "DELETE", "DROP", "ALTER", "ALL PRIVILEGES", "CREATE", "INDEX", "TRIGGER"];

/**
 * planGrants reads the database's tables from information_schema (so tables
 * added by later migrations are covered when it runs again) and the user's
 * current privileges, and returns the statements that bring the user to the
 * plan. Kysely's bookkeeping tables are left out: only migrations use them.
 */
// biome-ignore lint/suspicious/noExplicitAny: works on any package's database (plain SQL, schema, pools), whatever its tables
export async function planGrants(db: Kysely<any>, target: GrantTarget): Promise<GrantPlan> {
  const host = target.host ?? "%";
  const account = `${quoteString(target.user)}@${quoteString(host)}`;
  const schema = quoteName(target.database);
  const tables = (
    await sql<{ name: string }>`
      SELECT TABLE_NAME AS name FROM information_schema.TABLES
      WHERE TABLE_SCHEMA = ${target.database} AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME`.execute(db)
  ).rows
    .map((r) => r.name)
    .filter((name) => !name.startsWith("kysely_migration"));
  const warnings: string[] = [];
  for (const table of Object.keys(target.appendOnly)) {
    if (!tables.includes(table)) warnings.push(`table ${target.database}.${table} does not exist yet: run the migrations first`);
  }

  const statements: string[] = [];
  const grantee = account; // information_schema spells grantees 'user'@'host' too
  const tablePrivileges = (
    await sql<{ table: string; privilege: string }>`
      SELECT TABLE_NAME AS \`table\`, PRIVILEGE_TYPE AS privilege FROM information_schema.TABLE_PRIVILEGES
      WHERE GRANTEE = ${grantee} AND TABLE_SCHEMA = ${target.database}`.execute(db)
  ).rows;
  const columnPrivileges = (
    await sql<{ table: string; column: string; privilege: string }>`
      SELECT TABLE_NAME AS \`table\`, COLUMN_NAME AS \`column\`, PRIVILEGE_TYPE AS privilege FROM information_schema.COLUMN_PRIVILEGES
      WHERE GRANTEE = ${grantee} AND TABLE_SCHEMA = ${target.database}`.execute(db)
  ).rows;
  for (const [table, columns] of Object.entries(target.appendOnly)) {
    const excess = [
      ...new Set(tablePrivileges.filter((p) => p.table === table && !["SELECT", "INSERT"].includes(p.privilege)).map((p) => p.privilege)),
    ];
    if (excess.length > 0) statements.push(`REVOKE ${excess.join(", ")} ON ${schema}.${quoteName(table)} FROM ${account}`);
    const extraColumns = columnPrivileges.filter((p) => p.table === table && !(p.privilege === "UPDATE" && columns.includes(p.column)));
    for (const p of extraColumns)
      statements.push(`REVOKE ${p.privilege} (${quoteName(p.column)}) ON ${schema}.${quoteName(table)} FROM ${account}`);
  }
  for (const table of tables) {
    const columns = target.appendOnly[table];
    const privileges = columns ? `SELECT, INSERT, UPDATE (${columns.map(quoteName).join(", ")})` : DML.join(", ");
    statements.push(`GRANT ${privileges} ON ${schema}.${quoteName(table)} TO ${account}`);
  }

  const schemaWide = (
    await sql<{ privilege: string }>`
      SELECT PRIVILEGE_TYPE AS privilege FROM information_schema.SCHEMA_PRIVILEGES
      WHERE GRANTEE = ${grantee} AND TABLE_SCHEMA = ${target.database}`.execute(db)
  ).rows.map((r) => r.privilege);
  const global = (
    await sql<{ privilege: string }>`
      SELECT PRIVILEGE_TYPE AS privilege FROM information_schema.USER_PRIVILEGES WHERE GRANTEE = ${grantee}`.execute(db)
  ).rows.map((r) => r.privilege);
  const wideDb = schemaWide.filter((p) => WIDE.includes(p));
  const wideAll = global.filter((p) => WIDE.includes(p));
  if (wideDb.length > 0) {
    warnings.push(
      `${account} holds ${wideDb.join(", ")} on ${schema}.*, which overrides the table grants: REVOKE ${wideDb.join(", ")} ON ${schema}.* FROM ${account}`,
    );
  }
  if (wideAll.length > 0) {
    warnings.push(
      `${account} holds ${wideAll.join(", ")} on *.*, which overrides the table grants: REVOKE ${wideAll.join(", ")} ON *.* FROM ${account}`,
    );
  }
  return { statements, warnings };
}

function quoteName(name: string): string {
  if (!/^[A-Za-z0-9_$]+$/.test(name)) throw new Error(`not a plain identifier: ${name}`);
  return `\`${name}\``;
}

function quoteString(value: string): string {
  if (!/^[A-Za-z0-9_.%:-]+$/.test(value)) throw new Error(`account names may use letters, digits and _ . % : - only: ${value}`);
  return `'${value}'`;
}

/** applyGrants runs a plan's statements in order (as a user allowed to grant). */
// biome-ignore lint/suspicious/noExplicitAny: works on any package's database (plain SQL, schema, pools), whatever its tables
export async function applyGrants(db: Kysely<any>, plan: GrantPlan): Promise<void> {
  for (const statement of plan.statements) await sql.raw(statement).execute(db);
}
