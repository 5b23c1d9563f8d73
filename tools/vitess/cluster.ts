/**
 * A local Vitess 24 cluster for npm test's Vitess tier (tools/test.ts) and
 * the benchmarks' --vitess runs (tools/bench/beside-vitess.ts):
 * tools/vitess/vttestserver.sh --test-pool, keyspaces stockroom_t01 … in 2
 * shards each, built first if its binaries are missing (Go needed).
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { closeSync, existsSync, mkdirSync, openSync, readFileSync } from "node:fs";
import net from "node:net";
import path from "node:path";

const root = path.join(import.meta.dirname, "..", "..");

/** Keyspaces in the pool: a test file holds one or two at a time, a few files run at once. */
export const TEST_POOL = 12;

function reachable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: "127.0.0.1", port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(500, () => done(false));
    socket.once("connect", () => done(true));
    socket.once("error", () => done(false));
  });
}

/** startVitess starts vttestserver with the test pool and resolves once vtgate (url: its MySQL protocol) serves every keyspace. */
export async function startVitess(port: number): Promise<{ child: ChildProcess; url: string }> {
  const vitessBin = path.join(root, ".stockroom", "vitess", "bin");
  const built = ["vttestserver", "mysqlctl", "vtcombo"].every((b) => existsSync(path.join(vitessBin, b)));
  if (!built && spawnSync("go", ["version"]).status !== 0) {
    console.error(
      "\nThe Vitess tier needs Vitess 24 (vttestserver), built from source with Go ≥ 1.24 into .stockroom/vitess (a few minutes, once).\n" +
        "  Install Go 1.26 from https://go.dev/dl/ (or your distribution's golang package if it is that recent) and run npm test again;\n" +
        "  `npm test -- --mariadb` runs the MariaDB tier alone.",
    );
    process.exit(1);
  }
  if (await reachable(port + 3))
    throw new Error(`something already listens on 127.0.0.1:${port + 3}; stop it or set STOCKROOM_VITESS_PORT`);
  const script = path.join(root, "tools", "vitess", "vttestserver.sh");
  // Its log goes to a file: ava runs synchronously meanwhile, and a pipe nobody drains would stall the cluster.
  const logFile = path.join(root, ".stockroom", "vitess", `vttestserver-${port}.log`);
  mkdirSync(path.dirname(logFile), { recursive: true });
  const out = openSync(logFile, "w");
  const child = spawn("nice", [script, String(port), "--test-pool", String(TEST_POOL)], {
    cwd: root,
    detached: true,
    stdio: ["ignore", out, out],
  });
  closeSync(out);
  console.log(`vitess: starting vttestserver (log: ${path.relative(root, logFile)})`);
  const tail = () => readFileSync(logFile, "utf8").slice(-4000);
  let exited: number | null = null;
  child.once("exit", (code) => (exited = code ?? 1));
  const { createConnection } = await import("mysql2/promise");
  const deadline = Date.now() + 20 * 60_000; // a first build of Vitess takes minutes
  for (;;) {
    if (exited !== null) throw new Error(`vttestserver exited (${exited}) before serving:\n${tail()}`);
    if (Date.now() > deadline) throw new Error(`vttestserver did not serve within 20 min:\n${tail()}`);
    if (await reachable(port + 3)) {
      try {
        const conn = await createConnection({ host: "127.0.0.1", port: port + 3, user: "root" });
        try {
          const [rows] = await conn.query("SHOW DATABASES LIKE 'stockroom_t%'");
          if ((rows as unknown[]).length >= TEST_POOL) return { child, url: `mysql://root@127.0.0.1:${port + 3}` };
        } finally {
          await conn.end();
        }
      } catch {
        // vtgate is up but its tablets are not yet
      }
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
}

/** stopVitess ends vttestserver's process group (it tears its mysqld down) and waits for it. */
export async function stopVitess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  process.kill(-child.pid!, "SIGTERM");
  const timer = setTimeout(() => {
    try {
      process.kill(-child.pid!, "SIGKILL");
    } catch {
      // already gone
    }
  }, 30_000);
  await exited;
  clearTimeout(timer);
}
