/**
 * bench:spike's load generator in Go (spike-load-go/main.go): built into
 * .stockroom/bin/spike-load with the machine's Go the first time (and again
 * when its source is newer), run as a child process that reads a task on
 * stdin and writes its report on stdout, in spike-load.ts's shapes.
 *
 * BENCH_SPIKE_CLIENT chooses the generator of the direct gRPC calls: "go"
 * (the default when Go or the built program is there), or "node" (the
 * worker threads of spike-load.ts, the only generator before 2026-12-05).
 * The SDK's share is always the SDK, on a Node thread.
 */
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, statSync } from "node:fs";
import path from "node:path";
import type { LoadReport, LoadTask } from "./spike-load.ts";

const root = path.join(import.meta.dirname, "..", "..");
const source = path.join(import.meta.dirname, "spike-load-go");
const binary = path.join(root, ".stockroom", "bin", "spike-load");

export type LoadClient = "go" | "node";

/** A Go generator's task: an open loop (LoadTask's phases) or a closed loop of buyers measuring capacity. */
export type GoTask =
  | (Omit<LoadTask, "via"> & { mode: "open" })
  | {
      mode: "closed";
      url: string;
      apiKey: string;
      connections: number;
      skus: number;
      name: string;
      buyers: number;
      seconds: number;
      warmSeconds: number;
    };

export type GoReport = LoadReport & { placed: number };

const newest = () => Math.max(...["main.go", "go.mod", "go.sum"].map((f) => statSync(path.join(source, f)).mtimeMs));

/**
 * loadClient resolves BENCH_SPIKE_CLIENT to a generator, building the Go one
 * if needed. It says why when it falls back to Node (no Go, or the build
 * failed), and throws when "go" was asked for and cannot be built.
 */
export function loadClient(asked: string | undefined): LoadClient {
  if (asked !== undefined && asked !== "go" && asked !== "node") throw new Error(`BENCH_SPIKE_CLIENT is "go" or "node", not "${asked}"`);
  if (asked === "node") return "node";
  const fresh = existsSync(binary) && statSync(binary).mtimeMs >= newest();
  if (fresh) return "go";
  if (spawnSync("go", ["version"]).status !== 0) {
    const why =
      "bench:spike's Go load generator needs Go (≥ 1.24) to build it once into .stockroom/bin; install Go 1.26 from https://go.dev/dl/";
    if (asked === "go") throw new Error(why);
    console.log(`${why}. Using the Node load threads instead (they take more of the cores the server runs on).`);
    return "node";
  }
  mkdirSync(path.dirname(binary), { recursive: true });
  console.log("building bench:spike's Go load generator into .stockroom/bin/spike-load (once) …");
  const built = spawnSync("go", ["build", "-o", binary, "."], { cwd: source, stdio: ["ignore", "inherit", "inherit"] });
  if (built.status !== 0) {
    // Offline without grpc-go in the module cache, say: the Node threads still measure, less faithfully.
    const why = `go build of ${path.relative(root, source)} failed (exit ${built.status}; it needs the Go module proxy once)`;
    if (asked === "go") throw new Error(why);
    console.log(`${why}. Using the Node load threads instead (they take more of the cores the server runs on).`);
    return "node";
  }
  return "go";
}

/** runGo runs the Go generator on one task and resolves with its report; its stderr passes through. */
export function runGo(task: GoTask): Promise<GoReport> {
  return new Promise((resolve, reject) => {
    const child = spawn(binary, [], { stdio: ["pipe", "pipe", "inherit"] });
    const out: Buffer[] = [];
    child.stdout.on("data", (b: Buffer) => out.push(b));
    child.once("error", reject);
    child.once("close", (code) => {
      if (code !== 0) return reject(new Error(`the Go load generator exited with ${code}`));
      try {
        resolve(JSON.parse(Buffer.concat(out).toString("utf8")) as GoReport);
      } catch (error) {
        reject(error);
      }
    });
    child.stdin.end(JSON.stringify(task));
  });
}
