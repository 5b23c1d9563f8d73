import { spawn, type ChildProcess } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import type { DescService } from "@bufbuild/protobuf";
import { Health, HealthCheckResponse_ServingStatus as Status } from "@stockroom/sdk/gen/grpc/health/v1/health_pb.js";
import { createMerchant } from "@stockroom/common/rpc";
import {
  commonMigrations,
  createDatabase,
  dropDatabase,
  ensureDatabase,
  migrateToLatest,
  type MigrationSet,
  type CommonTables,
} from "@stockroom/common/db";
import { eventsMigrations } from "@stockroom/events";
import { freePort, testDatabaseUrl } from "@stockroom/common/testing";
import { summarizeProfile } from "./profile.ts";

const root = path.join(import.meta.dirname, "..", "..");

export interface ServerProcess {
  url: string;
  /** The server's pid, to read its CPU time from /proc. */
  pid: number;
  databaseUrl: string;
  merchantId: string;
  apiKey: string;
  /** A client of the service, authenticated as the server's merchant, or with apiKey as another one. */
  client<S extends DescService>(service: S, apiKey?: string): Client<S>;
  stop(): Promise<void>;
}

/**
 * startServerProcess runs a service entrypoint as its own process, as in
 * production, on a fresh migrated database with one merchant, so a
 * benchmark's client never shares the server's event loop. BENCH_PROFILE=1
 * writes the server's CPU profile to bench-results/profiles/ and prints its
 * top self-time functions and packages when the server stops (profile.ts).
 * BENCH_SERVER_NODE_ARGS adds Node/V8 flags to the server's command line
 * (space-separated, e.g. "--trace-gc --max-semi-space-size=8"), and
 * BENCH_SERVER_NODE runs the server on another Node binary: the server
 * alone, the bench and its load threads staying as they are, so two
 * runtimes or GC settings compare under the same load.
 */
export async function startServerProcess(options: {
  name: string;
  entrypoint: string;
  migrations: MigrationSet[];
  env?: Record<string, string>;
  /** Node/V8 flags, e.g. heap limits, as the production job passes them. */
  nodeArgs?: string[];
  /** Run on another server process's database and merchant (neither created, migrated nor dropped here). */
  shareWith?: Pick<ServerProcess, "databaseUrl" | "merchantId" | "apiKey">;
  /** The checkout the entrypoint belongs to (its working directory): this one by default. */
  cwd?: string;
}): Promise<ServerProcess> {
  const databaseUrl = options.shareWith?.databaseUrl ?? testDatabaseUrl(options.name);
  let merchant: { merchantId: string; apiKey: string };
  if (options.shareWith) {
    merchant = { merchantId: options.shareWith.merchantId, apiKey: options.shareWith.apiKey };
  } else {
    await ensureDatabase(databaseUrl);
    const db = createDatabase<CommonTables>({ url: databaseUrl, poolSize: 1 });
    try {
      // Every benchmarked service writes the outbox (its module lists eventsMigrations too).
      await migrateToLatest(db, [commonMigrations, ...options.migrations, eventsMigrations]);
      merchant = await createMerchant(db, "Benchmark merchant");
    } finally {
      await db.destroy();
    }
  }
  const port = await freePort();
  const profile =
    process.env["BENCH_PROFILE"] === "1" ? ["--cpu-prof", `--cpu-prof-dir=${path.join(root, "bench-results", "profiles")}`] : [];
  const extra = process.env["BENCH_SERVER_NODE_ARGS"]?.split(" ").filter(Boolean) ?? [];
  const node = process.env["BENCH_SERVER_NODE"] || process.execPath;
  const child: ChildProcess = spawn(node, [...profile, ...(options.nodeArgs ?? []), ...extra, options.entrypoint], {
    cwd: options.cwd ?? root,
    env: { ...process.env, PORT: String(port), DATABASE_URL: databaseUrl, LOG_LEVEL: "warn", ...options.env },
    stdio: ["ignore", "inherit", "inherit"],
  });
  const exited = new Promise<number | null>((resolve) => child.once("exit", resolve));
  const url = `http://127.0.0.1:${port}`;
  await waitServing(url, exited);
  const transportFor = (apiKey: string) => {
    const auth: Interceptor = (next) => (req) => {
      req.header.set("authorization", `Bearer ${apiKey}`);
      return next(req);
    };
    return createGrpcTransport({ baseUrl: url, interceptors: [auth] });
  };
  const transport = transportFor(merchant.apiKey);
  return {
    url,
    pid: child.pid!,
    databaseUrl,
    ...merchant,
    client: (service, apiKey) => createClient(service, apiKey === undefined ? transport : transportFor(apiKey)),
    async stop() {
      child.kill("SIGTERM");
      await exited;
      if (profile.length > 0) printProfile(child.pid!);
      if (!options.shareWith) await dropDatabase(databaseUrl);
    },
  };
}

/** printProfile prints where the server's CPU went, from the profile it wrote on exit (profile.ts). */
function printProfile(pid: number): void {
  const dir = path.join(root, "bench-results", "profiles");
  const file = readdirSync(dir).find((f) => f.includes(`.${pid}.`) && f.endsWith(".cpuprofile"));
  if (!file) return;
  const summary = summarizeProfile(JSON.parse(readFileSync(path.join(dir, file), "utf8")));
  const share = (n: number) => `    ${n.toFixed(1).padStart(5)}%  `;
  console.log(
    [
      `\nserver CPU profile ${path.join("bench-results", "profiles", file)} (${summary.totalMs.toFixed(0)} ms sampled), by self time:`,
      "  functions:",
      ...summary.functions.slice(0, 12).map((f) => `${share(f.share)}${f.name} ${f.where}`),
      "  packages and files:",
      ...summary.places.slice(0, 12).map((p) => `${share(p.share)}${p.place}`),
    ].join("\n"),
  );
}

async function waitServing(url: string, exited: Promise<number | null>): Promise<void> {
  const health = createClient(Health, createGrpcTransport({ baseUrl: url }));
  let done = false;
  void exited.then(() => (done = true));
  for (let i = 0; i < 200 && !done; i++) {
    try {
      if ((await health.check({}, { timeoutMs: 500 })).status === Status.SERVING) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`the server at ${url} did not become SERVING`);
}
