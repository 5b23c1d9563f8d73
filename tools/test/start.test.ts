import { spawnSync } from "node:child_process";
import path from "node:path";
import test from "ava";

const start = path.join(import.meta.dirname, "..", "start.ts");

test("npm start refuses a BULK_WORKERS_IN_PROCESS that is neither true nor false, before connecting to anything", (t) => {
  const run = spawnSync(process.execPath, [start], {
    env: { ...process.env, BULK_WORKERS_IN_PROCESS: "sometimes", PORT: "0", METRICS_PORT: "off", LOG_LEVEL: "silent" },
    encoding: "utf8",
    timeout: 30_000,
  });
  t.not(run.status, 0);
  t.regex(run.stderr, /BULK_WORKERS_IN_PROCESS must be true or false, got "sometimes"/);
});
