import { spawnSync } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import test from "ava";

const root = path.join(import.meta.dirname, "..", "..");
const buf = path.join(root, "node_modules", ".bin", "buf");

function runBuf(args: string[], cwd = root) {
  const env = { ...process.env, PATH: `${path.dirname(buf)}${path.delimiter}${process.env["PATH"] ?? ""}` };
  const r = spawnSync(buf, args, { cwd, encoding: "utf8", env });
  return { status: r.status, output: `${r.stdout}${r.stderr}` };
}

function files(dir: string, base = dir): string[] {
  return readdirSync(dir, { withFileTypes: true })
    .flatMap((e) => (e.isDirectory() ? files(path.join(dir, e.name), base) : [path.relative(base, path.join(dir, e.name))]))
    .sort();
}

test("buf lint (STANDARD) passes", (t) => {
  const r = runBuf(["lint"]);
  t.is(r.status, 0, r.output);
});

test("the contracts are wire- and source-compatible with the committed baseline (buf breaking)", (t) => {
  const r = runBuf(["breaking", "--against", "proto/baseline.binpb"]);
  t.is(r.status, 0, r.output);
});

test("buf breaking does catch a removed field", (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), "stockroom-breaking-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  cpSync(path.join(root, "proto"), path.join(dir, "proto"), { recursive: true });
  cpSync(path.join(root, "buf.yaml"), path.join(dir, "buf.yaml"));
  const file = path.join(dir, "proto/stockroom/catalog/v1/product.proto");
  writeFileSync(file, readFileSync(file, "utf8").replace("  int32 stock = 6;\n", ""));
  const r = runBuf(["breaking", "--against", path.join(root, "proto/baseline.binpb")], dir);
  t.not(r.status, 0);
  t.regex(r.output, /stock/);
});

test("generated code in sdk/src/gen and the OpenAPI document in sdk/openapi are up to date with proto/ (run `npm run generate`)", (t) => {
  const out = mkdtempSync(path.join(tmpdir(), "stockroom-gen-"));
  t.teardown(() => rmSync(out, { recursive: true, force: true }));
  const r = runBuf(["generate", "--output", out]);
  t.is(r.status, 0, r.output);
  for (const dir of ["sdk/src/gen", "sdk/openapi"]) {
    const fresh = path.join(out, dir);
    const committed = path.join(root, dir);
    t.deepEqual(files(committed), files(fresh), dir);
    for (const f of files(fresh)) {
      t.is(readFileSync(path.join(committed, f), "utf8"), readFileSync(path.join(fresh, f), "utf8"), `${dir}/${f} is stale`);
    }
  }
});
