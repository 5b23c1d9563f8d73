/**
 * toConnectError answers a backend that cannot be reached with UNAVAILABLE
 * (ErrorInfo BACKEND_UNAVAILABLE, which clients retry with backoff), not
 * INTERNAL. The errors are the real ones: mysql2 against a port nobody
 * listens on, a MariaDB connection killed mid-statement, a NATS connection
 * that is closed; vtgate's, which need a tablet killed, are built from the
 * texts a local cluster answered with. Anything else stays INTERNAL.
 */
import test from "ava";
import { sql } from "kysely";
import { Code, type ConnectError } from "@connectrpc/connect";
import { JetStreamError } from "@nats-io/jetstream";
import { ErrorInfoSchema } from "@stockroom/sdk/gen/google/rpc/error_details_pb.js";
import { createDatabase } from "../src/db/database.ts";
import { connectNats } from "../src/nats/jetstream.ts";
import { createLogger } from "../src/observe/log.ts";
import { toConnectError } from "../src/rpc/rpc-errors.ts";
import { freePort, recordingLogger, testDatabaseUrl } from "../testing/index.ts";

const log = createLogger("test", "silent");

/** failure runs fn, which must throw, and returns what it threw. */
async function failure(fn: () => Promise<unknown>): Promise<unknown> {
  try {
    await fn();
  } catch (error) {
    return error;
  }
  throw new Error("expected a failure");
}

function assertUnavailable(t: import("ava").ExecutionContext, status: ConnectError, backend: string) {
  t.is(status.code, Code.Unavailable, status.message);
  t.is(status.rawMessage, `the ${backend} is unavailable; retry with backoff`);
  const info = status.findDetails(ErrorInfoSchema)[0];
  t.is(info?.reason, "BACKEND_UNAVAILABLE");
  t.is(info?.metadata["backend"], backend);
}

test("a database nobody listens on: UNAVAILABLE, and the address is not sent", async (t) => {
  const { error, port } = await refusedQuery(t);
  t.is((error as { code?: string }).code, "ECONNREFUSED");
  const status = toConnectError(error, log, "/t");
  assertUnavailable(t, status, "database");
  t.false(status.message.includes(port));
});

/** victimAndKiller opens two one-connection pools on the server's own schema (a killed connection needs no database of its own). */
function victimAndKiller(t: import("ava").ExecutionContext) {
  const base = new URL(testDatabaseUrl("unavailable"));
  base.pathname = "/mysql";
  const victim = createDatabase({ url: base.toString(), poolSize: 1 });
  const killer = createDatabase({ url: base.toString(), poolSize: 1 });
  t.teardown(async () => {
    await victim.destroy();
    await killer.destroy();
  });
  return { victim, killer };
}

/** refusedQuery is what mysql2 throws for a database nobody listens on; the URL's port goes with it. */
async function refusedQuery(t: import("ava").ExecutionContext): Promise<{ error: unknown; port: string }> {
  const url = new URL(testDatabaseUrl("unavailable"));
  url.hostname = "127.0.0.1";
  url.port = String(await freePort());
  const db = createDatabase({ url: url.toString(), poolSize: 1 });
  t.teardown(() => db.destroy());
  return { error: await failure(() => sql`SELECT 1`.execute(db)), port: url.port };
}

test("a connection killed in the middle of a statement (a failover, an operator's KILL): UNAVAILABLE", async (t) => {
  const { victim, killer } = victimAndKiller(t);
  const { rows } = await sql<{ id: number }>`SELECT CONNECTION_ID() AS id`.execute(victim);
  const id = Number(rows[0]!.id);
  const sleeping = failure(() => sql`SELECT SLEEP(20)`.execute(victim));
  await new Promise((r) => setTimeout(r, 200));
  await sql`KILL CONNECTION ${sql.lit(id)}`.execute(killer);
  const error = await sleeping;
  // MariaDB closes the socket: mysql2 reports the connection lost (its errno 1927 would be mapped the same way).
  t.is((error as { code?: string }).code, "PROTOCOL_CONNECTION_LOST", String(error));
  assertUnavailable(t, toConnectError(error, log, "/t"), "database");
});

test("a held session whose connection was killed while idle (a relay's lock session through a restart): UNAVAILABLE", async (t) => {
  const { victim, killer } = victimAndKiller(t);
  const error = await victim.connection().execute(async (session) => {
    const { rows } = await sql<{ id: number }>`SELECT CONNECTION_ID() AS id`.execute(session);
    await sql`KILL CONNECTION ${sql.lit(Number(rows[0]!.id))}`.execute(killer);
    await new Promise((r) => setTimeout(r, 200));
    return failure(() => sql`SELECT 1`.execute(session));
  });
  t.regex((error as Error).message, /connection is in closed state/);
  assertUnavailable(t, toConnectError(error, log, "/t"), "database");
});

test("a closed NATS connection: UNAVAILABLE", async (t) => {
  const nats = await connectNats({ servers: "127.0.0.1:4222", name: "unavailable-test" });
  await nats.nc.close();
  const error = await failure(() => nats.js.publish("unavailable.test", "x"));
  t.is((error as Error).constructor.name, "ClosedConnectionError");
  assertUnavailable(t, toConnectError(error, log, "/t"), "message broker");
});

test("a pull the client gave up on when the server's heartbeats stopped (nats.js's own error, as its consumer builds it): UNAVAILABLE", (t) => {
  assertUnavailable(t, toConnectError(new JetStreamError("heartbeats missed"), log, "/t"), "message broker");
  t.is(toConnectError(new JetStreamError("consumer not found"), log, "/t").code, Code.Internal);
});

test("vtgate's answers while a shard's tablet restarts (their texts as a local cluster gave them): UNAVAILABLE", (t) => {
  const vtgate = (message: string) =>
    Object.assign(new Error(message), { errno: 1105, sqlState: "HY000", sqlMessage: message, code: "ER_UNKNOWN_ERROR" });
  for (const message of [
    "target: stockroom.80-.primary: vttablet: rpc error: code = Code(17) desc = operation not allowed in state SHUTTING_DOWN",
    `target: stockroom.-80.primary: no healthy tablet available for 'keyspace:"stockroom" shard:"-80" tablet_type:PRIMARY'`,
  ]) {
    assertUnavailable(t, toConnectError(vtgate(message), log, "/t"), "database");
  }
  // A statement vtgate itself refuses stays what it is.
  t.is(toConnectError(vtgate("VT09015: schema tracking required"), log, "/t").code, Code.Internal);
});

test("other errors stay INTERNAL: a plain one, an aborted call's timeout, a statement the server refused", async (t) => {
  t.is(toConnectError(new Error("boom"), log, "/t").code, Code.Internal);
  const timeout = await failure(
    () =>
      new Promise((_, reject) =>
        AbortSignal.timeout(1).addEventListener("abort", function () {
          reject(this.reason);
        }),
      ),
  );
  t.is((timeout as Error).name, "TimeoutError");
  t.is(toConnectError(timeout, log, "/t").code, Code.Internal);
  const base = new URL(testDatabaseUrl("unavailable"));
  base.pathname = "/mysql";
  const db = createDatabase({ url: base.toString(), poolSize: 1 });
  t.teardown(() => db.destroy());
  const refused = await failure(() => sql`SELECT * FROM no_such_table_here`.execute(db));
  t.is((refused as { errno?: number }).errno, 1146);
  t.is(toConnectError(refused, log, "/t").code, Code.Internal);
});

test("an outage's calls are logged once a minute per backend, with how many were answered since, not one line each", async (t) => {
  const recorded = recordingLogger();
  const closed = await failure(() => {
    const nats = connectNats({ servers: "127.0.0.1:4222", name: "unavailable-log-test" });
    return nats.then(async (n) => {
      await n.nc.close();
      await n.js.publish("unavailable.test", "x");
    });
  });
  for (let i = 0; i < 50; i++) toConnectError(closed, recorded, "/stockroom.catalog.v1.CatalogService/UpdateProduct");
  t.is(recorded.lines.length, 1);
  t.like(recorded.lines[0], { level: "warn", msg: "message broker unavailable: calls are answered UNAVAILABLE (logged once a minute)" });
  t.is(recorded.lines[0]!.fields["procedure"], "/stockroom.catalog.v1.CatalogService/UpdateProduct");
  // Another backend's outage is its own line; an error that is not an outage is logged every time.
  const { error: refused } = await refusedQuery(t);
  toConnectError(refused, recorded, "/t");
  toConnectError(refused, recorded, "/t");
  toConnectError(new Error("boom"), recorded, "/t");
  toConnectError(new Error("boom"), recorded, "/t");
  t.deepEqual(
    recorded.lines.map((l) => l.level),
    ["warn", "warn", "error", "error"],
  );
});

test("a pool whose database is away closes without an error (a tool stopping on the outage, a service shut down during one)", async (t) => {
  const url = new URL(testDatabaseUrl("unavailable"));
  url.hostname = "127.0.0.1";
  url.port = String(await freePort());
  const db = createDatabase({ url: url.toString(), poolSize: 2 });
  await t.throwsAsync(Promise.all([sql`SELECT 1`.execute(db), sql`SELECT 2`.execute(db)]), { code: "ECONNREFUSED" });
  await t.notThrowsAsync(db.destroy());
});
