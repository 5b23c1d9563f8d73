/**
 * The operator's tools, pointed at a database nobody listens on, stop with
 * one line that names the database and the setting to check, and exit 1:
 * no stack trace (they used to end in an uncaught ECONNREFUSED).
 */
import test from "ava";
import path from "node:path";
import { freePort, runProcess } from "@stockroom/common/testing";

const root = path.join(import.meta.dirname, "..", "..");

const tools: [name: string, file: string, args: string[], setting?: string][] = [
  ["migrate", "migrate.ts", []],
  ["migrate", "migrate.ts", ["--search"], "SEARCH_DATABASE_URL"],
  ["merchant:create", "create-merchant.ts", ["Acme"]],
  ["api-key", "api-key.ts", ["list", "01M9376YDJY8QW4Q5P40H5M97W"]],
  ["audit:verify", "verify-audit.ts", ["--merchant", "01M9376YDJY8QW4Q5P40H5M97W"]],
  ["sla:report", "sla-report.ts", []],
  ["db:grants", "db-grants.ts", ["--user", "svc", "--apply"]],
];

for (const [name, file, args, setting = "DATABASE_URL"] of tools) {
  test(`${name} ${args.join(" ")}: a database nobody listens on is one clear line and exit 1`, async (t) => {
    const url = `mysql://root@127.0.0.1:${await freePort()}/stockroom`;
    const { code, output: out } = await runProcess(process.execPath, [path.join(root, "tools", file), ...args], {
      env: { DATABASE_URL: url, SEARCH_DATABASE_URL: url },
    });
    t.is(code, 1, out);
    t.regex(
      out.trim(),
      new RegExp(
        `^${name}: the database is unavailable \\(connect ECONNREFUSED [^)]+\\); start it, or point ${setting} at one that runs, and run this again$`,
      ),
    );
  });
}
