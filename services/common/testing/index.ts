/**
 * Test support: every test file gets its own database (so ava's parallel
 * files never collide), a real API server on a free port, and two merchants.
 */
import { randomBytes } from "node:crypto";
import net from "node:net";
import { createClient, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import type { DescService } from "@bufbuild/protobuf";
import type { Kysely } from "kysely";
import { startApi, type RunningApi, type ServiceModule } from "../src/rpc/app.ts";
import { createMerchant } from "../src/rpc/auth.ts";
import { parseApiConfig, type ApiConfig } from "../src/config.ts";
import { dropDatabase, ensureDatabase } from "../src/db/database.ts";
import type { CommonTables } from "../src/db/schema.ts";

const BASE_URL = process.env["TEST_DATABASE_URL"] ?? "mysql://root@127.0.0.1:3306/";

/** testDatabaseUrl names a fresh database for one test file. */
export function testDatabaseUrl(name: string): string {
  const url = new URL(BASE_URL);
  url.pathname = `/t_${name.replace(/[^A-Za-z0-9_]/g, "_")}_${randomBytes(4).toString("hex")}`;
  return url.toString();
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
  modules: (db: Kysely<DB>) => ServiceModule[],
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
      if (owned) await dropDatabase(databaseUrl);
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

export * from "./otlp-receiver.ts";
export * from "./prom-text.ts";
