import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import test from "ava";
import { build } from "esbuild";
import { chromium } from "playwright-core";
import { CHROMIUM, CHROMIUM_FLAGS, requireChromium } from "../../tools/chromium.ts";
import { runProcess } from "@stockroom/common/testing";
import { startSdkHarness } from "./harness.ts";

// The package as merchants get it: `npm pack`, installed into a project
// outside the workspace, its examples run by Node and its browser entry
// bundled and run in headless Chromium, all against a live server.
const root = path.join(import.meta.dirname, "..", "..");
const h = await startSdkHarness("package");
const project = mkdtempSync(path.join(tmpdir(), "stockroom-consumer-"));
test.after.always(async () => {
  await h.close();
  rmSync(project, { recursive: true, force: true });
});

function run(
  cmd: string,
  args: string[],
  options: { cwd: string; env?: Record<string, string> },
): Promise<{ code: number | null; out: string }> {
  return runProcess(cmd, args, options).then(({ code, output }) => ({ code, out: output }));
}

/** The installed package, made once for every test of this file. */
const installed = (async () => {
  const packed = await run("npm", ["pack", "-w", "sdk", "--pack-destination", project, "--json"], { cwd: root });
  if (packed.code !== 0) throw new Error(`npm pack failed:\n${packed.out}`);
  const tarball = path.join(project, "stockroom-sdk-0.1.0.tgz");
  writeFileSync(path.join(project, "package.json"), JSON.stringify({ name: "consumer", private: true, type: "module" }));
  const install = await run(
    "npm",
    ["install", "--prefer-offline", "--no-audit", "--no-fund", tarball, "@bufbuild/protobuf@^2.17.0", "@connectrpc/connect@^2.2.0"],
    { cwd: project },
  );
  if (install.code !== 0) throw new Error(`npm install of the tarball failed:\n${install.out}`);
  return { packed: packed.out, dir: path.join(project, "node_modules", "@stockroom", "sdk") };
})();

test("the tarball holds the built JavaScript, declarations and generated code, and nothing of the sources or tests", async (t) => {
  const { dir } = await installed;
  const pkg = JSON.parse(readFileSync(path.join(dir, "package.json"), "utf8"));
  t.is(pkg.exports["."].default, "./dist/index.js");
  for (const f of [
    "dist/index.js",
    "dist/index.d.ts",
    "dist/web.js",
    "dist/web.d.ts",
    "src/gen/stockroom/bulk/v1/bulk_job_service_pb.js",
    "README.md",
    "examples/upload.mjs",
  ]) {
    t.true(existsSync(path.join(dir, f)), f);
  }
  for (const f of ["src/index.ts", "test", "tsconfig.build.json"]) t.false(existsSync(path.join(dir, f)), f);
  t.notRegex(readFileSync(path.join(dir, "dist/index.d.ts"), "utf8"), /\.ts["']/, "declarations import .js files");
});

test("the examples run with Node from the installed package", async (t) => {
  const { dir } = await installed;
  const env = { STOCKROOM_URL: h.api.url, STOCKROOM_API_KEY: h.api.merchantA.apiKey };
  const example = async (name: string, ...args: string[]) => {
    const r = await run(process.execPath, [path.join(dir, "examples", name), ...args], { cwd: project, env });
    t.is(r.code, 0, `${name}:\n${r.out}`);
    return r.out;
  };
  t.regex(await example("quick-start.mjs"), /MUG-\d+: Mug, 5 in stock, etag /);
  const products = await example("products.mjs");
  t.regex(products, /conflict: the product is now at /);
  t.regex(products, /stock: 8/);
  const errors = await example("errors.mjs");
  t.regex(errors, /invalid product\.sku/);
  t.regex(errors, /not found: /);
  t.regex(errors, /refused \(unauthenticated\)/);
  t.regex(await example("retries.mjs"), /created once: true/);
  const csv = path.join(project, "shop.csv");
  writeFileSync(
    csv,
    `sku,title,price,currency,stock\nEX-${h.suffix}-1,One,1.50,EUR,3\nEX-${h.suffix}-2,Two,2.50,EUR,4\n,No SKU,1.00,EUR,1\n`,
  );
  const upload = await example("upload.mjs", csv);
  t.regex(upload, /PARTIALLY_SUCCEEDED: 2 applied, 0 unchanged, 1 invalid/);
  const report = readFileSync(path.join(project, "shop.report.csv"), "utf8");
  t.regex(report, /MISSING_SKU/);
  const jobId = /job (\w+):/.exec(upload)![1]!;
  t.regex(await example("wait.mjs", jobId), /PARTIALLY_SUCCEEDED, 2 applied, 1 invalid/);
  const problems = await example("report.mjs", jobId);
  t.is(problems.trimEnd().split("\r\n").length, 2, "the header and the invalid line");
});

test("the browser entry bundles without Node modules and runs in headless Chromium over Connect and gRPC-Web", async (t) => {
  const { dir } = await installed;
  const www = path.join(project, "www");
  const bundle = await build({
    absWorkingDir: project,
    entryPoints: [path.join(dir, "examples", "browser", "app.mjs")],
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    outfile: path.join(www, "app.js"),
    metafile: true,
    logLevel: "silent",
  });
  const inputs = Object.keys(bundle.metafile.inputs);
  t.false(
    inputs.some((i) => i.includes("connect-node") || i.startsWith("node:")),
    "no Node-only module in the browser bundle",
  );
  t.true(inputs.some((i) => i.includes("@stockroom/sdk/dist/web.js")));
  t.log(`bundle: ${Math.round(bundle.metafile.outputs[Object.keys(bundle.metafile.outputs)[0]!]!.bytes / 1024)} KiB`);
  cpSync(path.join(dir, "examples", "browser", "index.html"), path.join(www, "index.html"));

  // The page and the API share one origin: a static server that passes every other path to the API.
  const api = new URL(h.api.url);
  const site = http.createServer((req, res) => {
    const file = req.url === "/" ? "index.html" : req.url === "/app.js" ? "app.js" : undefined;
    if (file) {
      res.writeHead(200, { "content-type": file.endsWith(".js") ? "text/javascript" : "text/html" });
      res.end(readFileSync(path.join(www, file)));
      return;
    }
    const upstream = http.request({ host: api.hostname, port: api.port, path: req.url, method: req.method, headers: req.headers }, (r) => {
      res.writeHead(r.statusCode ?? 502, r.headers);
      r.pipe(res);
    });
    upstream.on("error", () => res.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => site.listen(0, "127.0.0.1", resolve));
  const origin = `http://127.0.0.1:${(site.address() as { port: number }).port}`;
  t.teardown(() => new Promise<void>((resolve) => site.close(() => resolve())));

  try {
    requireChromium();
  } catch (error) {
    t.fail((error as Error).message);
  }
  const profile = mkdtempSync(path.join(tmpdir(), "stockroom-chromium-"));
  const browser = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: CHROMIUM_FLAGS });
  t.teardown(async () => {
    await browser.close();
    rmSync(profile, { recursive: true, force: true });
  });
  const page = await browser.newPage();
  const pageErrors: string[] = [];
  page.on("pageerror", (e) => pageErrors.push(e.message));
  await page.goto(origin);
  await page.waitForFunction(() => "stockroomDemo" in globalThis);

  const rows = 300;
  const csv = `${["sku,title,price,currency,stock", ...Array.from({ length: rows }, (_, i) => `WEB-${h.suffix}-${i},Item ${i},${i + 1}.00,EUR,${i}`)].join("\n")}\n`;
  const upload = await page.evaluate(
    async ({ apiKey, csv }) => {
      type Demo = { uploadAndFollow(o: object): Promise<{ job: { state: number; counts: { applied: bigint } }; reportLines: number }> };
      const demo = (globalThis as unknown as { stockroomDemo: Demo }).stockroomDemo;
      const progress: string[] = [];
      const file = new File([csv], "web.csv", { type: "text/csv" });
      const { job, reportLines } = await demo.uploadAndFollow({
        baseUrl: location.origin,
        apiKey,
        file,
        log: (l: string) => progress.push(l),
      });
      return { state: job.state, applied: String(job.counts.applied), reportLines, progress };
    },
    { apiKey: h.api.merchantA.apiKey, csv },
  );
  t.is(upload.applied, String(rows));
  t.is(upload.reportLines, rows + 1);
  t.true(upload.progress.includes("uploaded 100%"), upload.progress.join("; "));
  t.true(
    upload.progress.some((l) => l.startsWith("SUCCEEDED")),
    upload.progress.join("; "),
  );

  const conflict = await page.evaluate(
    async ({ apiKey, sku }) => {
      type Demo = { editWithConflict(o: object): Promise<{ conflict: boolean; currentEtag: string; name: string }> };
      return (globalThis as unknown as { stockroomDemo: Demo }).stockroomDemo.editWithConflict({
        baseUrl: location.origin,
        apiKey,
        transport: "grpc-web",
        sku,
      });
    },
    { apiKey: h.api.merchantA.apiKey, sku: `WEBC-${h.suffix}` },
  );
  t.deepEqual({ conflict: conflict.conflict, name: conflict.name }, { conflict: true, name: "ConflictError" });
  t.regex(conflict.currentEtag, /\.2$/);
  t.deepEqual(pageErrors, []);
});

/** readmeSnippets are the ```ts blocks of sdk/README.md, in order. */
function readmeSnippets(): string[] {
  const readme = readFileSync(path.join(root, "sdk", "README.md"), "utf8");
  return [...readme.matchAll(/^```ts\n([\s\S]*?)^```$/gm)].map((m) => m[1]!);
}

test("every TypeScript snippet of the README compiles under strict settings against the installed package", async (t) => {
  const { dir } = await installed;
  const snippets = readmeSnippets();
  t.true(snippets.length >= 6, `${snippets.length} snippets`);
  const src = path.join(project, "snippets");
  rmSync(src, { recursive: true, force: true });
  mkdirSync(src);
  // A snippet that uses `stockroom` without making one gets the quick start's client, as the README says.
  const prelude = `import { createStockroomClient as __create } from "@stockroom/sdk";\nconst stockroom = __create({ baseUrl: "http://127.0.0.1:8080", apiKey: "srk_x" });\n`;
  snippets.forEach((code, i) => {
    const needsClient = /\bstockroom\./.test(code) && !/const stockroom\b/.test(code);
    writeFileSync(path.join(src, `snippet-${i + 1}.ts`), `${needsClient ? prelude : ""}${code}\nexport {};\n`);
  });
  // The snippets' tsconfig.json lives in their own folder: in the project's root, the browser test's esbuild
  // (running at the same time) read it while this test was writing it, and failed on an empty file.
  writeFileSync(
    path.join(src, "tsconfig.json"),
    JSON.stringify({
      compilerOptions: {
        target: "es2023",
        lib: ["es2023", "dom", "dom.iterable"],
        module: "nodenext",
        moduleResolution: "nodenext",
        strict: true,
        noUncheckedIndexedAccess: true,
        noEmit: true,
        skipLibCheck: true,
        types: ["node"],
        typeRoots: [path.join(root, "node_modules", "@types")],
      },
      include: ["."],
    }),
  );
  t.true(existsSync(path.join(dir, "dist", "index.d.ts")));
  const tsc = await run(process.execPath, [path.join(root, "node_modules", "typescript", "bin", "tsc"), "-p", "."], { cwd: src });
  t.is(tsc.code, 0, `tsc:\n${tsc.out}`);
});
