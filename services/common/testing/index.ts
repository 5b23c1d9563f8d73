/**
 * Test support: every test file gets its own database (so ava's parallel
 * files never collide), a real API server on a free port, and two merchants.
 */
import { randomBytes } from "node:crypto";
import { mkdirSync, openSync, closeSync, unlinkSync, writeSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import type http2 from "node:http2";
import { createClient, type Client, type ConnectError, type Interceptor, type Transport } from "@connectrpc/connect";
import { findTrailerError } from "@connectrpc/connect/protocol-grpc";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import type { DescService } from "@bufbuild/protobuf";
import type { Kysely } from "kysely";
import { startApi, type ModuleDeps, type RunningApi, type ServiceModule } from "../src/rpc/app.ts";
import { createMerchant } from "../src/rpc/auth.ts";
import { parseApiConfig, type ApiConfig } from "../src/config.ts";
import { dropDatabase, ensureDatabase } from "../src/db/database.ts";
import type { CommonTables } from "../src/db/schema.ts";

const BASE_URL = process.env["TEST_DATABASE_URL"] ?? "mysql://root@127.0.0.1:3306/";

/**
 * The Vitess tier of npm test (tools/test.ts) sets STOCKROOM_TEST_VITESS to
 * vtgate's URL and STOCKROOM_TEST_VITESS_KEYSPACES to the size of the pool of
 * empty keyspaces tools/vitess/vttestserver.sh --test-pool started
 * (stockroom_t01 …, 2 shards each). On Vitess a database is a keyspace,
 * which cannot be created or dropped through vtgate, so each database a test
 * asks for is a keyspace taken from the pool, and dropTestDatabase empties it
 * and gives it back.
 */
const VITESS_URL = process.env["STOCKROOM_TEST_VITESS"];
const VITESS_KEYSPACES = Number(process.env["STOCKROOM_TEST_VITESS_KEYSPACES"] ?? 0);

/** onVitess: this test run's databases are keyspaces behind vtgate. */
export const onVitess = VITESS_URL !== undefined && VITESS_URL !== "";

/** vitessPoolDir holds one lock file per keyspace in use (created exclusively, so files in parallel never share one). */
export function vitessPoolDir(vtgateUrl: string): string {
  return path.join(os.tmpdir(), `stockroom-vitess-pool-${new URL(vtgateUrl).port}`);
}

/** testDatabaseUrl names a fresh database for one test file (on Vitess: takes a free keyspace of the pool). */
export function testDatabaseUrl(name: string): string {
  if (onVitess) return takeKeyspace(name);
  const url = new URL(BASE_URL);
  url.pathname = `/t_${name.replace(/[^A-Za-z0-9_]/g, "_")}_${randomBytes(4).toString("hex")}`;
  return url.toString();
}

function takeKeyspace(name: string): string {
  const dir = vitessPoolDir(VITESS_URL!);
  mkdirSync(dir, { recursive: true });
  for (let i = 1; i <= VITESS_KEYSPACES; i++) {
    const keyspace = `stockroom_t${String(i).padStart(2, "0")}`;
    let fd: number;
    try {
      fd = openSync(path.join(dir, keyspace), "wx");
    } catch (error) {
      if ((error as { code?: string }).code === "EEXIST") continue;
      throw error;
    }
    writeSync(fd, `${name} ${process.pid}\n`);
    closeSync(fd);
    const url = new URL(VITESS_URL!);
    url.pathname = `/${keyspace}`;
    return url.toString();
  }
  throw new Error(
    `all ${VITESS_KEYSPACES} test keyspaces of ${VITESS_URL} are in use (${dir}); start vttestserver with a larger --test-pool`,
  );
}

/** dropTestDatabase drops a database testDatabaseUrl named (on Vitess: empties the keyspace and returns it to the pool). */
export async function dropTestDatabase(url: string): Promise<void> {
  await dropDatabase(url);
  if (onVitess) unlinkSync(path.join(vitessPoolDir(VITESS_URL!), decodeURIComponent(new URL(url).pathname.slice(1))));
}

/** namesMerchant: a read/write filters on merchant_id = ?, an insert writes the merchant_id column (Vitess routes each by it). */
export function namesMerchant(sql: string): boolean {
  const s = sql.replace(/\s+/g, " ").trim().toLowerCase();
  if (/^(begin|start transaction|commit|rollback)/.test(s)) return true;
  if (s.startsWith("insert")) return /^insert into `?\w+`? \(`?merchant_id`?,/.test(s);
  return /\bwhere `?merchant_id`? = \?/.test(s);
}

/**
 * vitessOffenders lists the statements a test server ran that Vitess could
 * not route to one merchant's shard: those that do not name a merchant, and
 * reads or writes whose values name both test merchants.
 */
export function vitessOffenders(api: Pick<TestApi, "queries" | "merchantA" | "merchantB">): { unnamed: string[]; crossMerchant: string[] } {
  const merchants = [api.merchantA.merchantId, api.merchantB.merchantId];
  return {
    unnamed: api.queries.filter(({ sql }) => !namesMerchant(sql)).map((q) => q.sql),
    crossMerchant: api.queries
      .filter(({ sql, parameters }) => /^\s*(select|update|delete)/i.test(sql) && merchants.every((m) => parameters.includes(m)))
      .map((q) => q.sql),
  };
}

export interface TestMerchant {
  merchantId: string;
  apiKey: string;
}

export interface TestApi<DB extends CommonTables = CommonTables> {
  api: RunningApi<DB>;
  url: string;
  databaseUrl: string;
  merchantA: TestMerchant;
  merchantB: TestMerchant;
  /** Every SQL statement the server ran, for Vitess-readiness checks. */
  queries: { sql: string; parameters: readonly unknown[] }[];
  /** client returns a typed client speaking gRPC (HTTP/2) or Connect (HTTP/1.1) as a merchant. */
  client<S extends DescService>(service: S, merchant: TestMerchant, protocol?: "grpc" | "connect"): Client<S>;
  close(): Promise<void>;
}

/**
 * startTestApi starts an API process for the modules on a fresh, migrated
 * database; with options.databaseUrl, on that existing, migrated database
 * instead (not migrated or dropped here), e.g. as a user with restricted grants.
 */
export async function startTestApi<DB extends CommonTables = CommonTables>(
  name: string,
  modules: (db: Kysely<DB>, deps: ModuleDeps) => ServiceModule[],
  options: { databaseUrl?: string; config?: Partial<ApiConfig> } = {},
): Promise<TestApi<DB>> {
  const owned = options.databaseUrl === undefined;
  const databaseUrl = options.databaseUrl ?? testDatabaseUrl(name);
  if (owned) await ensureDatabase(databaseUrl);
  const queries: TestApi["queries"] = [];
  const config = {
    ...parseApiConfig({}),
    port: 0,
    databaseUrl,
    logLevel: (process.env["TEST_LOG_LEVEL"] ?? "silent") as "silent",
    drainMs: 2_000,
    ...options.config,
  };
  const api = await startApi({
    name: `test-${name}`,
    config,
    migrate: owned,
    modules,
    observe: (sql, parameters) => queries.push({ sql, parameters }),
  });
  const common = api.db as unknown as Kysely<CommonTables>; // DB extends CommonTables
  const merchantA = await createMerchant(common, "Merchant A");
  const merchantB = await createMerchant(common, "Merchant B");
  queries.length = 0;
  const transports = new Map<string, Transport>();
  return {
    api,
    url: api.server.url,
    databaseUrl,
    merchantA,
    merchantB,
    queries,
    client(service, merchant, protocol = "grpc") {
      const key = `${protocol}:${merchant.apiKey}`;
      let transport = transports.get(key);
      if (!transport) {
        const auth: Interceptor = (next) => (req) => {
          req.header.set("authorization", `Bearer ${merchant.apiKey}`);
          return next(req);
        };
        transport =
          protocol === "grpc"
            ? createGrpcTransport({ baseUrl: api.server.url, interceptors: [auth] })
            : createConnectTransport({ baseUrl: api.server.url, httpVersion: "1.1", interceptors: [auth] });
        transports.set(key, transport);
      }
      return createClient(service, transport);
    },
    async close() {
      await api.stop();
      if (owned) await dropTestDatabase(databaseUrl);
    },
  };
}

/** freePort asks the OS for a loopback port nobody listens on. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

/** waitFor polls probe until it returns a value, or fails naming what it waited for. */
export async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export * from "./drop-proxy.ts";
export * from "./nats-server.ts";
export * from "./process.ts";
export * from "./recording-logger.ts";
export * from "./otlp-receiver.ts";
export * from "./prom-text.ts";

/**
 * grpcErrorOf reads the error status of a gRPC response received over plain
 * node:http2 (its headers for a trailers-only answer, else its trailers);
 * undefined for OK or no status.
 */
export function grpcErrorOf(headers: http2.IncomingHttpHeaders): ConnectError | undefined {
  return findTrailerError(new Headers(Object.entries(headers).flatMap(([k, v]) => (k.startsWith(":") ? [] : [[k, String(v)]]))));
}
