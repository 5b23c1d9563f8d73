/**
 * `npm run build -w sdk` (and `npm pack -w sdk`, through prepack): compiles
 * the SDK's hand-written sources (sdk/src/*.ts) to JavaScript and
 * declarations in sdk/dist, which the package's exports point at. The
 * generated code in sdk/src/gen is JavaScript with declarations already and
 * ships as it is; dist imports it by the package's own name
 * (@stockroom/sdk/gen/...), so there is one copy of every descriptor.
 * The output is built aside and moved into place, so a build running
 * alongside another never sees half a dist.
 */
import { spawnSync } from "node:child_process";
import { readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";

const root = path.join(import.meta.dirname, "..");
const sdk = path.join(root, "sdk");
const dist = path.join(sdk, "dist");
const staging = path.join(sdk, `.dist-${process.pid}`);

try {
  const tsc = spawnSync(
    path.join(root, "node_modules", ".bin", "tsc"),
    ["-p", path.join(sdk, "tsconfig.build.json"), "--outDir", staging],
    {
      stdio: "inherit",
    },
  );
  if (tsc.status !== 0) {
    console.error("sdk build: tsc failed");
    process.exit(tsc.status ?? 1);
  }
  // tsc rewrites "./x.ts" to "./x.js" in JavaScript but not in declarations.
  for (const file of readdirSync(staging)) {
    if (!file.endsWith(".d.ts")) continue;
    const full = path.join(staging, file);
    writeFileSync(full, readFileSync(full, "utf8").replace(/(["'])(\.\.?\/[^"']+)\.ts\1/g, "$1$2.js$1"));
  }
  rmSync(dist, { recursive: true, force: true });
  renameSync(staging, dist);
  console.log(`sdk build: ${readdirSync(dist).length} files in ${path.relative(root, dist)}`);
} finally {
  rmSync(staging, { recursive: true, force: true });
}
