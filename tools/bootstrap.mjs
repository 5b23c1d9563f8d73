#!/usr/bin/env node
// Entry point of `npm start` and `npm test`. Plain JavaScript so it runs on
// whatever Node the machine has: it installs the project (which brings the
// pinned Node 24 as the `node` package), makes sure MariaDB and NATS answer
// (starting them where installed), then hands over to Node 24.
import { spawnSync, execFileSync } from "node:child_process";
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import os from "node:os";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const node24 = path.join(root, "node_modules", ".bin", "node");
const command = process.argv[2];
const commands = {
  start: ["tools/start.ts"],
  test: ["tools/test.ts"],
};
if (!commands[command]) {
  console.error(`usage: node tools/bootstrap.mjs ${Object.keys(commands).join("|")}`);
  process.exit(2);
}

function run(cmd, args, options = {}) {
  const result = spawnSync(cmd, args, { cwd: root, stdio: "inherit", ...options });
  if (result.error) throw result.error;
  return result.status ?? 1;
}

// 1. Dependencies, including Node 24 itself.
if (!existsSync(node24) || !existsSync(path.join(root, "node_modules", ".package-lock.json"))) {
  console.log("stockroom: installing dependencies (npm ci)…");
  if (run("npm", ["ci", "--no-audit", "--no-fund"]) !== 0) {
    console.error("stockroom: `npm ci` failed; fix the error above and run the command again.");
    process.exit(1);
  }
}

// 2. Backing services.
function reachable(host, port, timeoutMs = 500) {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    const done = (ok) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once("connect", () => done(true));
    socket.once("error", () => done(false));
  });
}

async function waitFor(host, port, seconds) {
  for (let i = 0; i < seconds * 4; i++) {
    if (await reachable(host, port)) return true;
    await new Promise((r) => setTimeout(r, 250));
  }
  return false;
}

const dbUrl = new URL(process.env.DATABASE_URL ?? "mysql://root@127.0.0.1:3306/stockroom");
const natsUrl = new URL((process.env.NATS_URL ?? "nats://127.0.0.1:4222").split(",")[0]);
const isLocal = (host) => ["127.0.0.1", "localhost", "::1", "[::1]"].includes(host);
const isRoot = process.getuid?.() === 0;

const services = [
  {
    name: "MariaDB",
    host: dbUrl.hostname,
    port: Number(dbUrl.port || 3306),
    binary: "/usr/sbin/mariadbd",
    prepare() {
      mkdirSync("/run/mysqld", { recursive: true });
      try {
        execFileSync("chown", ["mysql:mysql", "/run/mysqld"]);
      } catch {
        // no mysql user: mariadbd will say what it needs
      }
    },
    start: ["start-stop-daemon", "--start", "--oknodo", "--background", "--exec", "/usr/sbin/mariadbd"],
    install: "sudo apt-get install -y mariadb-server && sudo systemctl start mariadb",
    required: true,
  },
  {
    name: "NATS (JetStream)",
    host: natsUrl.hostname,
    port: Number(natsUrl.port || 4222),
    binary: "/usr/sbin/nats-server",
    prepare() {
      mkdirSync("/var/lib/nats-server", { recursive: true });
    },
    start: [
      "start-stop-daemon",
      "--start",
      "--oknodo",
      "--background",
      "--exec",
      "/usr/sbin/nats-server",
      "--",
      "-a",
      "127.0.0.1",
      "-p",
      "4222",
      "-js",
      "-sd",
      "/var/lib/nats-server",
      "-l",
      "/var/log/nats-server.log",
    ],
    install: "sudo apt-get install -y nats-server, then: nats-server -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server",
    // Bulk jobs queue their chunks on JetStream.
    required: true,
  },
];

for (const s of services) {
  if (await reachable(s.host, s.port)) continue;
  const where = `${s.host}:${s.port}`;
  if (isLocal(s.host) && existsSync(s.binary) && isRoot) {
    console.log(`stockroom: ${s.name} is not answering on ${where}; starting it…`);
    s.prepare();
    run(s.start[0], s.start.slice(1));
    if (await waitFor(s.host, s.port, 30)) continue;
    console.error(`stockroom: started ${s.binary} but nothing answers on ${where} after 30 s.`);
  } else if (isLocal(s.host) && existsSync(s.binary)) {
    console.error(`stockroom: ${s.name} is installed but not running on ${where}; start it (as root: ${s.start.join(" ")}).`);
  } else {
    console.error(
      `stockroom: ${s.name} is not reachable on ${where} and not installed here.\n  Install and start it: ${s.install}\n  or point ${s.name === "MariaDB" ? "DATABASE_URL" : "NATS_URL"} at a running server.`,
    );
  }
  if (s.required) process.exit(1);
}

// 3. Chromium, for the SDK's browser test (headless, driven by playwright-core).
const chromium = "/usr/bin/chromium";
if (command === "test" && !existsSync(chromium)) {
  const how = "apt-get update && apt-get install -y chromium";
  if (!existsSync("/usr/bin/apt-get")) {
    console.error(
      `stockroom: Chromium is missing (${chromium}); the SDK's browser test needs it. Install Debian's chromium package (${how}).`,
    );
    process.exit(1);
  }
  if (!isRoot) {
    console.error(`stockroom: Chromium is missing (${chromium}); the SDK's browser test needs it. Install it: sudo sh -c '${how}'`);
    process.exit(1);
  }
  console.log("stockroom: installing Chromium for the SDK's browser test (apt-get install chromium)…");
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  const ok =
    run("apt-get", ["update", "-qq"], { env }) === 0 &&
    run("apt-get", ["install", "-y", "-qq", "-o", "Dpkg::Options::=--force-confold", "chromium"], {
      env,
      stdio: ["ignore", "ignore", "inherit"],
    }) === 0;
  if (!ok || !existsSync(chromium)) {
    console.error(`stockroom: installing Chromium failed (see above); install it yourself, as root: ${how}`);
    process.exit(1);
  }
}

// 4. promtool, for the alert rules' unit tests (tools/observability/alerts.test.yml, run by
// tools/test/observability.test.ts). Debian ships it in the prometheus package; installing that
// package would also install (and maybe start) a Prometheus server, so only promtool is taken
// out of the .deb, into .stockroom/bin (git-ignored), where the test looks for it.
const promtool = path.join(root, ".stockroom", "bin", "promtool");
const onPath = (name) => (process.env.PATH ?? "").split(path.delimiter).some((dir) => dir && existsSync(path.join(dir, name)));
if (command === "test" && !process.env.PROMTOOL && !existsSync(promtool) && !onPath("promtool")) {
  const how = "apt-get download prometheus && dpkg-deb --fsys-tarfile prometheus_*.deb | tar -x ./usr/bin/promtool";
  if (!existsSync("/usr/bin/apt-get")) {
    console.error(
      `stockroom: promtool is missing; the alert rule tests need it. Put it on PATH, at ${promtool}, or name it in PROMTOOL (Debian: ${how}).`,
    );
    process.exit(1);
  }
  console.log("stockroom: installing promtool for the alert rule tests (from Debian's prometheus package, into .stockroom/bin)…");
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  const tmp = mkdtempSync(path.join(os.tmpdir(), "stockroom-promtool-"));
  const quiet = { cwd: tmp, env, stdio: ["ignore", "ignore", "inherit"] };
  try {
    let ok = run("apt-get", ["download", "-qq", "prometheus"], quiet) === 0;
    // A fresh machine may have no package lists yet: fetch them (as root) and try again.
    if (!ok && isRoot)
      ok = run("apt-get", ["update", "-qq"], quiet) === 0 && run("apt-get", ["download", "-qq", "prometheus"], quiet) === 0;
    const deb = ok ? readdirSync(tmp).find((f) => f.startsWith("prometheus_") && f.endsWith(".deb")) : undefined;
    ok =
      deb !== undefined &&
      run("sh", ["-c", `dpkg-deb --fsys-tarfile "${deb}" | tar -x ./usr/bin/promtool`], { cwd: tmp }) === 0 &&
      existsSync(path.join(tmp, "usr", "bin", "promtool"));
    if (ok) {
      mkdirSync(path.dirname(promtool), { recursive: true });
      copyFileSync(path.join(tmp, "usr", "bin", "promtool"), promtool);
      chmodSync(promtool, 0o755);
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  if (!existsSync(promtool)) {
    const as = isRoot ? "" : " (as root, `apt-get update` first if apt has no package lists)";
    console.error(`stockroom: installing promtool failed (see above); install it yourself${as}: ${how}, then copy it to ${promtool}`);
    process.exit(1);
  }
}

// 5. Hand over to Node 24.
process.exit(run(node24, [...commands[command], ...process.argv.slice(3)]));
