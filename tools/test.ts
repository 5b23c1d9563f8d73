/**
 * `npm test`: type-check everything, then run every ava test file (contracts
 * lint/breaking/codegen checks included) against the real MariaDB.
 */
import { spawnSync } from "node:child_process";
import path from "node:path";

const root = path.join(import.meta.dirname, "..");
const bin = (name: string) => path.join(root, "node_modules", ".bin", name);

function step(title: string, cmd: string, args: string[]): void {
  console.log(`\n== ${title}`);
  const result = spawnSync(cmd, args, { cwd: root, stdio: "inherit" });
  if (result.status !== 0) {
    console.error(`\n${title} failed`);
    process.exit(result.status ?? 1);
  }
}

step("type-check (tsc)", bin("tsc"), ["-p", "."]);
step("tests (ava)", bin("ava"), process.argv.slice(2));
