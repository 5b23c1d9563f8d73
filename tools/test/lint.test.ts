/**
 * The package boundary is a lint rule: another package is imported through
 * its face (@stockroom/<package>, or an entry its package.json exports),
 * never a file inside it, by name or by path. These lint probe files with
 * the project's own Biome configuration, so a rule that stopped working (a
 * Biome upgrade, a config edit) fails here.
 */
import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import test from "ava";

const root = path.join(import.meta.dirname, "..", "..");
const biome = path.join(root, "node_modules", ".bin", "biome");

/** lint lints one probe file and returns the import specifiers Biome refused. */
async function refused(source: string): Promise<string[]> {
  const dir = await mkdtemp(path.join(tmpdir(), "stockroom-lint-"));
  try {
    const file = path.join(dir, "probe.ts");
    await writeFile(file, source);
    const run = await promisify(execFile)(biome, [
      "lint",
      "--colors=off",
      `--config-path=${path.join(root, "biome.jsonc")}`,
      "--max-diagnostics=100",
      file,
    ]).then(
      (r) => r.stdout + r.stderr,
      (e: { stdout: string; stderr: string }) => e.stdout + e.stderr,
    );
    return [...run.matchAll(/noRestrictedImports[\s\S]*?> \d+ │ import .* from "([^"]+)"/g)].map((m) => m[1]!);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test("deep imports of another package's files are refused, by name or by path", async (t) => {
  const specifiers = [
    "@stockroom/catalog/store.ts",
    "@stockroom/catalog/src/store.ts",
    "@stockroom/common/src/db/database.ts",
    "@stockroom/bulk/apply.ts",
    "../../catalog/src/store.ts",
    "../../../services/orders/src/store.ts",
    "../../search/test/harness.ts",
  ];
  const source =
    specifiers.map((s, i) => `import { a${i} } from "${s}";\n`).join("") +
    `export const all = [${specifiers.map((_, i) => `a${i}`).join(", ")}];\n`;
  t.deepEqual((await refused(source)).sort(), [...specifiers].sort());
});

test("faces, exported entries, test harnesses and the SDK's generated code are allowed", async (t) => {
  const specifiers = [
    "@stockroom/catalog",
    "@stockroom/common",
    "@stockroom/common/db",
    "@stockroom/common/nats",
    "@stockroom/common/rpc",
    "@stockroom/common/observe",
    "@stockroom/common/testing",
    "@stockroom/search/testing",
    "@stockroom/sdk/gen/stockroom/catalog/v1/product_pb.js",
    "@stockroom/sdk/web",
    "../src/store.ts",
    "./domain.ts",
  ];
  const source =
    specifiers.map((s, i) => `import { a${i} } from "${s}";\n`).join("") +
    `export const all = [${specifiers.map((_, i) => `a${i}`).join(", ")}];\n`;
  t.deepEqual(await refused(source), []);
});
