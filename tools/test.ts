/**
 * `npm test`: type-check everything, lint and check formatting (Biome), then
 * run every ava test file (contracts lint/breaking/codegen checks included)
 * against the real MariaDB and NATS.
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
step("type-check the dashboard (tsc -p web)", bin("tsc"), ["-p", "web"]);
step("lint and format check (biome ci)", bin("biome"), ["ci", "--colors=off", "."]);

// ava's own summary ("12 tests passed") is echoed, then restated as one
// plain "tests: N passed, N failed" line that any CI log reader understands.
console.log("\n== tests (ava)");
const ava = spawnSync(bin("ava"), process.argv.slice(2), {
  cwd: root,
  stdio: ["inherit", "pipe", "inherit"],
  encoding: "utf8",
  maxBuffer: 256 * 1024 * 1024,
});
process.stdout.write(ava.stdout ?? "");
const count = (re: RegExp) => Number(re.exec(ava.stdout ?? "")?.[1] ?? 0);
const marks = (mark: string) => (ava.stdout ?? "").split("\n").filter((l) => l.trimStart().startsWith(mark)).length;
const passed = Math.max(count(/(\d+) tests? passed/), marks("✔"));
const failed =
  Math.max(count(/(\d+) tests? failed/), marks("✘")) + count(/(\d+) uncaught exceptions?/) + count(/(\d+) unhandled rejections?/);
const status = ava.status ?? 1;
console.log(`\ntests: ${passed} passed, ${failed > 0 || status === 0 ? failed : 1} failed`);
process.exit(status);
