/**
 * The dashboard's build (web/dist), made when missing or older than its
 * sources: `npm start` and the dashboard's end-to-end test call this, so a
 * checkout never serves a stale app.
 */
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import path from "node:path";

const root = path.join(import.meta.dirname, "..");
export const WEB_ROOT = path.join(root, "web");
export const WEB_DIST = path.join(WEB_ROOT, "dist");

/** newest is the latest modification time of a file or of any file under a directory. */
function newest(p: string): number {
  if (!existsSync(p)) return 0;
  const s = statSync(p);
  if (!s.isDirectory()) return s.mtimeMs;
  let max = s.mtimeMs;
  for (const e of readdirSync(p)) max = Math.max(max, newest(path.join(p, e)));
  return max;
}

/** webBuildIsStale: no build, or a source (the app, its config, the SDK it bundles) changed after it. */
export function webBuildIsStale(): boolean {
  const built = path.join(WEB_DIST, "index.html");
  if (!existsSync(built)) return true;
  const sources = ["src", "index.html", "vite.config.ts", "package.json"].map((p) => path.join(WEB_ROOT, p));
  sources.push(path.join(root, "sdk", "src"));
  return Math.max(...sources.map(newest)) > statSync(built).mtimeMs;
}

/** buildWeb runs `vite build` in web/ when the build is stale (or always, with force); it throws with Vite's output on failure. */
export function buildWeb(options: { force?: boolean; quiet?: boolean } = {}): boolean {
  if (!options.force && !webBuildIsStale()) return false;
  const vite = path.join(root, "node_modules", ".bin", "vite");
  const run = spawnSync(vite, ["build", "--logLevel", "error"], {
    cwd: WEB_ROOT,
    // A production build whatever the caller's NODE_ENV (ava sets "test", which would bundle React's development build).
    env: { ...process.env, NODE_ENV: "production" },
    encoding: "utf8",
    stdio: options.quiet ? "pipe" : "inherit",
  });
  if (run.status !== 0) throw new Error(`building the dashboard failed (vite build in web/):\n${run.stdout ?? ""}${run.stderr ?? ""}`);
  return true;
}
