/**
 * The production configuration under nomad/ cannot run here (no Nomad, Vitess
 * or Jaeger), so these tests parse it and hold it to what the code really
 * does: the env names the API reads, the tables the migrations create, and
 * Vitess's rules for a table sharded by merchant_id.
 */
import test, { type ExecutionContext } from "ava";
import { spawnSync } from "node:child_process";
import { access, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { parse } from "@cdktf/hcl2json";
import { parseBulkConfig } from "@stockroom/bulk";
import { parseApiConfig, parseNatsSecurity, type Env } from "@stockroom/common";
import { parseEventStreamConfig, parseRelayConfig } from "@stockroom/events";
import { parseNotifyConfig } from "@stockroom/notify";
import { parseOrderConfig } from "@stockroom/orders";
import { parseSearchConfig } from "@stockroom/search";
import { API_NODE_ARGS, WORKER_NODE_ARGS } from "../bench/bulk-processes.ts";

/** Body is one HCL block as @cdktf/hcl2json returns it. */
type Body = Record<string, any>;

const root = path.resolve(import.meta.dirname, "..", "..");
const read = (file: string) => readFile(path.join(root, file), "utf8");

// ---- Nomad job files ------------------------------------------------------

interface JobFile {
  name: string;
  /** The job block, with var.* and local.* references replaced by their values, and dynamic groups expanded. */
  job: Body;
  /** The whole file as parsed (variables, locals). */
  doc: Body;
}

const jobFiles = new Map<string, Promise<JobFile>>();

/** loadJob parses a nomad/*.hcl file once; it must hold exactly one job. */
function loadJob(file: string): Promise<JobFile> {
  let loaded = jobFiles.get(file);
  if (!loaded) {
    loaded = read(file).then(async (text) => {
      const doc = await parse(file, text);
      const jobs = Object.entries<Body[]>(doc["job"] ?? {});
      if (jobs.length !== 1) throw new Error(`${file} holds ${jobs.length} jobs, not 1`);
      const [name, [job]] = jobs[0]!;
      return { name, job: expandDynamicGroups(resolveRefs(doc, job)), doc };
    });
    jobFiles.set(file, loaded);
  }
  return loaded;
}

/** resolveRefs replaces values that are exactly `${var.x}` or `${local.x}` (a variable's default, a local's value). */
function resolveRefs(doc: Body, value: unknown): any {
  if (typeof value === "string") {
    const ref = /^\$\{(var|local)\.(\w+)\}$/.exec(value);
    if (!ref) return value;
    const name = ref[2]!;
    if (ref[1] === "var") return doc["variable"]?.[name]?.[0]?.["default"] ?? value;
    const locals = (doc["locals"] ?? []).find((l: Body) => name in l);
    return locals ? resolveRefs(doc, locals[name]) : value;
  }
  if (Array.isArray(value)) return value.map((v) => resolveRefs(doc, v));
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, resolveRefs(doc, v)]));
  }
  return value;
}

/**
 * expandDynamicGroups turns each `dynamic "group"` block into the groups Nomad
 * makes of it, one per for_each element: `${group.value.x}` in strings becomes
 * the element's x, a bare `group.value.x` in an expression the string literal
 * "x's value" (so the literals of args = concat(…) read as Nomad passes them),
 * and `${N + group.value.x}` the sum.
 */
function expandDynamicGroups(job: Body): Body {
  const dynamics: Body[] = job["dynamic"]?.["group"] ?? [];
  if (dynamics.length === 0) return job;
  const groups: Record<string, Body[]> = { ...(job["group"] ?? {}) };
  for (const dynamic of dynamics) {
    if (!Array.isArray(dynamic["for_each"])) throw new Error(`dynamic group: for_each ${dynamic["for_each"]} is not a list`);
    for (const item of dynamic["for_each"] as Body[]) {
      const fill = (value: unknown): any => {
        if (typeof value === "string") {
          const sum = /^\$\{(\d+) \+ group\.value\.(\w+)\}$/.exec(value);
          if (sum) return Number(sum[1]) + Number(item[sum[2]!]);
          return value
            .replace(/\$\{group\.value\.(\w+)\}/g, (_, key: string) => String(item[key]))
            .replace(/\bgroup\.value\.(\w+)/g, (_, key: string) => JSON.stringify(String(item[key])));
        }
        if (Array.isArray(value)) return value.map(fill);
        if (value !== null && typeof value === "object") return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, fill(v)]));
        return value;
      };
      const [label] = fill(dynamic["labels"]) as string[];
      groups[label!] = [fill(dynamic["content"][0])];
    }
  }
  return { ...job, group: groups };
}

/** labelled returns blocks like `group "api" {}` by label. */
function labelled(block: Body, kind: string): Map<string, Body> {
  return new Map(Object.entries<Body[]>(block[kind] ?? {}).map(([label, bodies]) => [label, bodies[0]!]));
}

/** blocks returns the unlabelled blocks like `service {}` of a kind. */
function blocks(block: Body, kind: string): Body[] {
  return block[kind] ?? [];
}

/** group returns the job's group by name, failing clearly when it is missing. */
function group(job: JobFile, name: string): Body {
  const found = labelled(job.job, "group").get(name);
  if (!found) throw new Error(`job ${job.name} has no group "${name}"`);
  return found;
}

/** staticPorts maps each network port label of a group to its static port. */
function staticPorts(g: Body): Map<string, number | undefined> {
  const ports = new Map<string, number | undefined>();
  for (const network of blocks(g, "network")) {
    for (const [label, port] of labelled(network, "port")) ports.set(label, port["static"]);
  }
  return ports;
}

/** commandLine is the task's command and arguments, whatever the driver. */
function commandLine(task: Body): string[] {
  const config = blocks(task, "config")[0] ?? {};
  return [config["command"], ...(config["args"] ?? [])].filter((part) => typeof part === "string");
}

/** nodeFlags are the flags a task gives node before its script. */
function nodeFlags(task: Body): string[] {
  return commandLine(task).filter((arg) => arg.startsWith("--"));
}

/** templateText joins the data of a task's templates (config files rendered by Nomad). */
function templateText(task: Body): string {
  return blocks(task, "template")
    .map((t) => String(t["data"]))
    .join("\n");
}

/**
 * taskEnv is the environment a task gets: its env blocks plus every
 * `env = true` template, whose lines are NAME=value between template actions.
 */
function taskEnv(task: Body): Record<string, string> {
  const env: Record<string, string> = {};
  for (const block of blocks(task, "env")) Object.assign(env, block);
  for (const template of blocks(task, "template")) {
    if (template["env"] !== true) continue;
    for (const line of String(template["data"]).split("\n")) {
      const text = line.trim();
      if (text.replace(/\{\{.*?\}\}/g, "").trim() === "") continue;
      const setting = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(text);
      if (!setting) throw new Error(`env template line is not NAME=value: ${text}`);
      env[setting[1]!] = setting[2]!;
    }
  }
  return env;
}

/** concrete stands a placeholder in for each value Nomad fills in at run time. */
function concrete(env: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(env).map(([k, v]) => [k, String(v).replace(/\{\{.*?\}\}|\$\{[^}]*\}/g, "x")]));
}

/** durationMs reads a Go duration such as "30s" or "1m30s". */
function durationMs(text: string): number {
  const units: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 };
  if (!/^(\d+(\.\d+)?(ms|s|m|h))+$/.test(text)) throw new Error(`not a duration: "${text}"`);
  let total = 0;
  for (const [, n, , unit] of text.matchAll(/(\d+(\.\d+)?)(ms|s|m|h)/g)) total += Number(n) * units[unit!]!;
  return total;
}

/**
 * envNamesReadByApp lists the variables a process reads, from its own source:
 * its entrypoint and the config parsers it calls (by default, those of the
 * catalog, bulk and search processes together).
 */
async function envNamesReadByApp(
  files: string[] = [
    "services/common/src/config.ts",
    "services/events/src/config.ts",
    "services/catalog/src/main.ts",
    "services/bulk/src/config.ts",
    "services/bulk/src/main.ts",
    "services/search/src/config.ts",
    "services/search/src/main.ts",
  ],
): Promise<Set<string>> {
  const sources = await Promise.all(files.map(read));
  const names = new Set<string>();
  for (const m of sources.join("\n").matchAll(/(?:env\[|read\w*\(env,\s*)"([A-Z][A-Z0-9_]*)"/g)) names.add(m[1]!);
  return names;
}

/**
 * An API job built like catalog.nomad.hcl: a group "api" whose task runs
 * `entrypoint` after a prestart migrate task. `sources` are what the process
 * reads its env from, `parsers` the config parsers its entrypoint calls.
 */
interface ApiJob {
  job: string;
  entrypoint: string;
  sources: string[];
  parsers: ((env: Env) => unknown)[];
}

const API_JOBS: ApiJob[] = [
  {
    job: "catalog",
    entrypoint: "services/catalog/src/main.ts",
    sources: ["services/common/src/config.ts", "services/notify/src/config.ts", "services/catalog/src/main.ts"],
    parsers: [parseApiConfig, parseNotifyConfig],
  },
  {
    job: "orders",
    entrypoint: "services/orders/src/main.ts",
    sources: ["services/common/src/config.ts", "services/orders/src/config.ts", "services/orders/src/main.ts"],
    parsers: [parseApiConfig, parseOrderConfig],
  },
];

/** apiJobTasks finds an API job's group "api", its tasks and the one that runs the entrypoint. */
async function apiJobTasks({ job: name, entrypoint }: ApiJob) {
  const job = await loadJob(`nomad/${name}.nomad.hcl`);
  const api = group(job, "api");
  const tasks = [...labelled(api, "task")];
  const [, apiTask] = tasks.find(([, t]) => commandLine(t).includes(entrypoint)) ?? [];
  if (!apiTask) throw new Error(`no ${name} task runs ${entrypoint}`);
  return { api, tasks, apiTask };
}

const catalogTasks = () => apiJobTasks(API_JOBS.find((spec) => spec.job === "catalog")!);

/** assertThroughVtgate checks that a DATABASE_URL reaches the stockroom keyspace through vtgate's MySQL port. */
async function assertThroughVtgate(t: ExecutionContext, url: string): Promise<void> {
  const vtgate = group(await loadJob("nomad/vitess.nomad.hcl"), "vtgate");
  const database = new URL(url);
  t.regex(database.hostname, /vtgate/);
  t.is(staticPorts(vtgate).get("mysql"), Number(database.port));
  t.is(database.pathname, "/stockroom");
}

/** natsClientPort is the NATS servers' client port (nats.nomad.hcl), -1 when it has none. */
async function natsClientPort(): Promise<number> {
  return staticPorts(group(await loadJob("nomad/nats.nomad.hcl"), "nats")).get("client") ?? -1;
}

/** unknownEnv lists the variables a task sets that nothing in `known` reads (OTEL_* are the SDK's). */
function unknownEnv(env: Record<string, string>, known: Set<string>): string[] {
  return Object.keys(env).filter((k) => !known.has(k) && !k.startsWith("OTEL_"));
}

test("every nomad/*.hcl file parses and holds one job", async (t) => {
  const files = (await readdir(path.join(root, "nomad"))).filter((f) => f.endsWith(".hcl"));
  t.true(files.length >= 4, `found ${files.join(", ")}`);
  for (const file of files) {
    const { name } = await loadJob(`nomad/${file}`);
    t.is(`${name}.nomad.hcl`, file, "the file is named after its job");
  }
});

test("every script a node task runs is in the repository, and nomad/README.md lists every job file", async (t) => {
  const files = (await readdir(path.join(root, "nomad"))).filter((f) => f.endsWith(".hcl"));
  const readme = await read("nomad/README.md");
  for (const file of files) {
    t.true(readme.includes(`\`${file}\``), `nomad/README.md lists ${file}`);
    const { job } = await loadJob(`nomad/${file}`);
    for (const [groupName, g] of labelled(job, "group")) {
      for (const [taskName, task] of labelled(g, "task")) {
        const [command, ...args] = commandLine(task);
        if (command !== "node") continue;
        const script = args.find((a) => !a.startsWith("-"));
        t.truthy(script, `${file} ${groupName}/${taskName} names a script`);
        await t.notThrowsAsync(access(path.join(root, script!)), `${file} ${groupName}/${taskName}: ${script} exists`);
      }
    }
  }
});

for (const spec of API_JOBS) {
  const { job } = spec;

  test(`${job}: at least 2 instances, rolled out with canaries and reverted when unhealthy`, async (t) => {
    const { api } = await apiJobTasks(spec);
    t.true(api["count"] >= 2, `count = ${api["count"]}`);
    const update = blocks(api, "update")[0];
    t.truthy(update, "update block");
    t.true(update?.["canary"] >= 1 || update?.["max_parallel"] >= 1);
    t.is(update?.["auto_revert"], true);
    t.not(update?.["health_check"], "manual");
  });

  test(`${job}: Consul checks the gRPC port with grpc.health.v1`, async (t) => {
    const { api } = await apiJobTasks(spec);
    const ports = staticPorts(api);
    t.true(ports.has("grpc"), "a network port named grpc");
    const grpcChecks = blocks(api, "service")
      .filter((s) => s["port"] === "grpc")
      .flatMap((s) => blocks(s, "check").filter((c) => c["type"] === "grpc" && (c["port"] ?? s["port"]) === "grpc"));
    t.true(grpcChecks.length >= 1, "a check of type grpc on the grpc port");
  });

  test(`${job}: kill_timeout outlasts the drain (DRAIN_MS) with time left to close the pool and flush traces`, async (t) => {
    const { apiTask } = await apiJobTasks(spec);
    const killMs = durationMs(String(apiTask["kill_timeout"] ?? "5s"));
    const { drainMs } = parseApiConfig(concrete(taskEnv(apiTask)));
    t.true(killMs >= 10_000, `kill_timeout ${killMs} ms`);
    t.true(killMs >= drainMs + 5_000, `kill_timeout ${killMs} ms, DRAIN_MS ${drainMs}`);
    t.not(apiTask["kill_signal"] ?? "SIGTERM", "SIGKILL");
  });

  test(`${job}: a prestart task runs the migrations from the same image before the API starts`, async (t) => {
    const { tasks, apiTask } = await apiJobTasks(spec);
    const prestart = tasks.filter(([, task]) => blocks(task, "lifecycle")[0]?.["hook"] === "prestart");
    const migrate = prestart.find(([, task]) => commandLine(task).includes("tools/migrate.ts"));
    t.truthy(migrate, `prestart tasks: ${prestart.map(([name]) => name).join(", ") || "none"}`);
    const [, task] = migrate!;
    t.not(blocks(task, "lifecycle")[0]?.["sidecar"], true, "runs to completion, not alongside");
    t.is(blocks(task, "config")[0]?.["image"], blocks(apiTask, "config")[0]?.["image"]);
    t.truthy(taskEnv(task)["DATABASE_URL"], "the migrate task gets DATABASE_URL");
  });

  test(`${job}: every env var a task sets is one the app reads, with a value it accepts`, async (t) => {
    const { tasks } = await apiJobTasks(spec);
    const known = await envNamesReadByApp(spec.sources);
    t.true(known.has("DATABASE_URL") && known.has("DRAIN_MS") && known.has("MIGRATE_ON_START"), [...known].join(" "));
    const { apiTask: catalogApi } = await catalogTasks();
    for (const [name, task] of tasks) {
      const env = taskEnv(task);
      t.deepEqual(unknownEnv(env, known), [], `task ${name} sets variables nothing reads`);
      for (const parse of spec.parsers) t.notThrows(() => parse(concrete(env)), `task ${name}`);
      t.is(blocks(task, "config")[0]?.["image"], blocks(catalogApi, "config")[0]?.["image"], `task ${name} uses the release image`);
    }
  });

  test(`${job}: DATABASE_URL goes through vtgate to the stockroom keyspace, traces to Jaeger's OTLP/HTTP port`, async (t) => {
    const { apiTask } = await apiJobTasks(spec);
    const env = concrete(taskEnv(apiTask));
    await assertThroughVtgate(t, env["DATABASE_URL"]!);
    const otlp = new URL(env["OTEL_EXPORTER_OTLP_ENDPOINT"]!);
    t.regex(otlp.hostname, /jaeger/);
    t.is(otlp.port, "4318");
  });
}

test("bulk: the API and a scalable worker group run from the catalog's image, with settings the app accepts", async (t) => {
  const job = await loadJob("nomad/bulk.nomad.hcl");
  const known = await envNamesReadByApp();
  const api = group(job, "api");
  const workers = group(job, "workers");
  t.true(api["count"] >= 2, `api count = ${api["count"]}`);
  t.true(workers["count"] >= 2, `worker count = ${workers["count"]}`);
  const tasks = [...labelled(api, "task"), ...labelled(workers, "task")];
  const runs = (file: string) => tasks.find(([, task]) => commandLine(task).includes(file))?.[1];
  const apiTask = runs("services/bulk/src/main.ts");
  const workerTask = runs("services/bulk/src/worker-main.ts");
  t.truthy(apiTask, "a task runs services/bulk/src/main.ts");
  t.truthy(workerTask, "a task runs services/bulk/src/worker-main.ts");
  t.truthy(runs("tools/migrate.ts"), "a task runs the migrations");
  const { apiTask: catalogApi } = await catalogTasks();
  for (const [name, task] of tasks) {
    const env = taskEnv(task);
    t.deepEqual(unknownEnv(env, known), [], `task ${name} sets variables nothing reads`);
    t.notThrows(() => parseApiConfig(concrete(env)), `task ${name}`);
    t.notThrows(() => parseBulkConfig(concrete(env)), `task ${name}`);
    t.is(blocks(task, "config")[0]?.["image"], blocks(catalogApi, "config")[0]?.["image"], `task ${name} uses the release image`);
  }
  // bench:bulk runs the API and the workers with the V8 flags Nomad gives them, and what it measured fits:
  // the API's heap is capped well under its memory, a worker's (not capped) peaked near 450 MB.
  t.deepEqual(nodeFlags(apiTask!), API_NODE_ARGS);
  t.deepEqual(nodeFlags(workerTask!), WORKER_NODE_ARGS);
  const heapMb = Number(/--max-old-space-size=(\d+)/.exec(nodeFlags(apiTask!).join(" "))?.[1]);
  const memoryMb = (task: Body) => Number(blocks(task, "resources")[0]?.["memory"]);
  t.true(heapMb > 0 && heapMb + 100 <= memoryMb(apiTask!), `heap ${heapMb} MB, memory ${memoryMb(apiTask!)} MB`);
  t.true(memoryMb(workerTask!) >= 512, `worker memory ${memoryMb(workerTask!)} MB`);
  // Uploads are long calls: the kill timeout outlasts their drain.
  const { drainMs } = parseApiConfig(concrete(taskEnv(apiTask!)));
  t.true(durationMs(String(apiTask!["kill_timeout"])) >= drainMs + 5_000);
  // Workers finish or give back the chunks they hold before Nomad kills them.
  t.true(durationMs(String(workerTask!["kill_timeout"])) >= 30_000);
  t.is(Number(new URL(concrete(taskEnv(workerTask!))["NATS_URL"]!).port), await natsClientPort());
});

test("metrics: every API and worker task serves METRICS_PORT on a port Consul registers for Prometheus; those without a gRPC port are checked on /readyz", async (t) => {
  const jobs = [
    { file: "nomad/catalog.nomad.hcl", groups: ["api"] },
    { file: "nomad/bulk.nomad.hcl", groups: ["api", "workers"] },
    { file: "nomad/orders.nomad.hcl", groups: ["api"] },
    { file: "nomad/webhooks.nomad.hcl", groups: ["dispatcher"] },
    { file: "nomad/search.nomad.hcl", groups: ["relay", "api"] },
  ];
  for (const { file, groups } of jobs) {
    const job = await loadJob(file);
    for (const name of groups) {
      const g = group(job, name);
      // The group's main task: the one that is not a prestart (migrate) task.
      const [taskName, task] = [...labelled(g, "task")].find(([, task]) => blocks(task, "lifecycle").length === 0)!;
      const env = concrete(taskEnv(task));
      const { metricsPort, host } = parseApiConfig(env);
      const where = `${file} ${name}/${taskName}`;
      t.truthy(metricsPort, `${where} sets METRICS_PORT`);
      t.is(host, "0.0.0.0", `${where} listens on all interfaces`);
      const port = blocks(g, "network")
        .flatMap((n) => [...labelled(n, "port")])
        .find(([label]) => label === "metrics");
      t.is(port?.[1]["to"], metricsPort, `${where}: port "metrics" maps to METRICS_PORT`);
      t.true((blocks(task, "config")[0]?.["ports"] ?? []).includes("metrics"), `${where} publishes the metrics port`);
      const service = blocks(g, "service").find((s) => s["port"] === "metrics");
      t.true((service?.["tags"] ?? []).includes("prometheus"), `${where}: a Consul service tagged prometheus on the metrics port`);
      if (!staticPorts(g).has("grpc")) {
        t.true(
          blocks(service!, "check").some((c) => c["type"] === "http" && c["path"] === "/readyz"),
          `${where} is checked on /readyz`,
        );
      }
      if (file === "nomad/bulk.nomad.hcl") {
        // The bulk API says how many workers are desired (it stays up when they all die); the workers need not.
        const desired = taskEnv(task)["BULK_WORKERS_DESIRED"];
        if (name === "api") {
          const workers = group(job, "workers")["count"];
          t.is(String(desired), String(workers), `${where} says as many workers are desired as the workers group runs`);
        }
        if (name === "workers") t.is(desired, undefined, `${where}: the desired count comes from the API`);
      }
      if (blocks(g, "update")[0]) {
        t.is(blocks(g, "update")[0]?.["health_check"] ?? "checks", "checks", `${where}: deploys wait for the checks`);
      }
    }
  }
});

test("search: a relay with a standby, and search APIs that migrate their own keyspace first, with settings the app accepts", async (t) => {
  const job = await loadJob("nomad/search.nomad.hcl");
  const known = await envNamesReadByApp();
  const [relay, api] = [group(job, "relay"), group(job, "api")];
  t.true(relay["count"] >= 2, `relay count = ${relay["count"]}: one leads, one stands by`);
  t.true(api["count"] >= 2, `api count = ${api["count"]}`);
  const tasks = [...labelled(relay, "task"), ...labelled(api, "task")];
  const runs = (file: string) => tasks.find(([, task]) => commandLine(task).includes(file))?.[1];
  const [relayTask, searchTask, migrate] = [
    runs("services/events/src/relay-main.ts"),
    runs("services/search/src/main.ts"),
    runs("tools/migrate.ts"),
  ];
  t.truthy(relayTask, "a task runs the relay");
  t.truthy(searchTask, "a task runs services/search/src/main.ts");
  t.deepEqual(commandLine(migrate!).slice(1), ["tools/migrate.ts", "--search"], "the prestart task migrates the search database");
  t.is(blocks(migrate!, "lifecycle")[0]?.["hook"], "prestart");
  const { apiTask: catalogApi } = await catalogTasks();
  for (const [name, task] of tasks) {
    const env = concrete(taskEnv(task));
    t.deepEqual(unknownEnv(env, known), [], `task ${name} sets variables nothing reads`);
    for (const parse of [parseApiConfig, parseSearchConfig, parseEventStreamConfig, parseRelayConfig])
      t.notThrows(() => parse(env), `task ${name}`);
    t.is(blocks(task, "config")[0]?.["image"], blocks(catalogApi, "config")[0]?.["image"], `task ${name} uses the release image`);
  }
  // The projection is its own keyspace (search-vschema.json); API keys and products stay in stockroom.
  const searchEnv = concrete(taskEnv(searchTask!));
  t.is(new URL(searchEnv["SEARCH_DATABASE_URL"]!).pathname, "/stockroom_search");
  t.is(new URL(searchEnv["DATABASE_URL"]!).pathname, "/stockroom");
  t.is(new URL(concrete(taskEnv(migrate!))["SEARCH_DATABASE_URL"]!).pathname, "/stockroom_search");
  t.is(new URL(concrete(taskEnv(relayTask!))["DATABASE_URL"]!).pathname, "/stockroom", "the relay reads the outbox of stockroom");
  // Relay and search agree on the stream, replicated on the 3-node cluster.
  const streams = [relayTask!, searchTask!].map((task) => parseEventStreamConfig(concrete(taskEnv(task))));
  t.deepEqual(streams[0], streams[1]);
  t.is(streams[0]!.replicas, group(await loadJob("nomad/nats.nomad.hcl"), "nats")["count"]);
  t.true(durationMs(String(searchTask!["kill_timeout"])) >= parseApiConfig(searchEnv).drainMs + 5_000);
});

test("webhooks: dispatchers sharing one durable consumer, from the catalog's image, agreeing with the catalog API and the relay", async (t) => {
  const dispatcher = group(await loadJob("nomad/webhooks.nomad.hcl"), "dispatcher");
  t.true(dispatcher["count"] >= 2, `dispatcher count = ${dispatcher["count"]}`);
  const tasks = [...labelled(dispatcher, "task")];
  const [, task] = tasks.find(([, task]) => commandLine(task).includes("services/notify/src/dispatcher-main.ts")) ?? [];
  t.truthy(task, "a task runs services/notify/src/dispatcher-main.ts");
  const known = await envNamesReadByApp([
    "services/common/src/config.ts",
    "services/events/src/config.ts",
    "services/notify/src/config.ts",
    "services/notify/src/dispatcher-main.ts",
  ]);
  const { apiTask: catalogApi } = await catalogTasks();
  for (const [name, task] of tasks) {
    const env = concrete(taskEnv(task));
    t.deepEqual(unknownEnv(env, known), [], `task ${name} sets variables nothing reads`);
    for (const parse of [parseApiConfig, parseNotifyConfig, parseEventStreamConfig]) t.notThrows(() => parse(env), `task ${name}`);
    t.is(blocks(task, "config")[0]?.["image"], blocks(catalogApi, "config")[0]?.["image"], `task ${name} uses the release image`);
  }
  // Every allocation joins the same consumer: its name must not vary per allocation.
  t.notRegex(taskEnv(task!)["WEBHOOK_CONSUMER"] ?? "", /\$\{|\{\{/);
  const env = concrete(taskEnv(task!));
  await assertThroughVtgate(t, env["DATABASE_URL"]!);
  t.is(Number(new URL(env["NATS_URL"]!).port), await natsClientPort());
  // It may create the stream: with the relay's settings.
  const relay = group(await loadJob("nomad/search.nomad.hcl"), "relay");
  const [, relayTask] = [...labelled(relay, "task")].find(([, task]) => commandLine(task).includes("services/events/src/relay-main.ts"))!;
  t.deepEqual(parseEventStreamConfig(env), parseEventStreamConfig(concrete(taskEnv(relayTask))));
  // The catalog API registers endpoints and replays dead letters: same targets rule and delivery budget.
  const notify = parseNotifyConfig(env);
  const catalogNotify = parseNotifyConfig(concrete(taskEnv(catalogApi)));
  t.false(notify.allowPrivateTargets, "production refuses private webhook targets");
  t.is(catalogNotify.allowPrivateTargets, notify.allowPrivateTargets);
  t.is(catalogNotify.dispatcher.maxAgeMs, notify.dispatcher.maxAgeMs, "WEBHOOK_MAX_AGE_MS");
  // SIGTERM lets the requests in flight finish, each within WEBHOOK_TIMEOUT_MS.
  t.true(durationMs(String(task!["kill_timeout"])) >= notify.dispatcher.requestTimeoutMs + 5_000);
});

test("nats: three JetStream servers on distinct hosts, clustered, storing on a host volume", async (t) => {
  const nats = group(await loadJob("nomad/nats.nomad.hcl"), "nats");
  t.is(nats["count"], 3);
  t.true(blocks(nats, "constraint").some((c) => c["operator"] === "distinct_hosts" && String(c["value"]) === "true"));
  const [, task] = [...labelled(nats, "task")][0]!;
  const conf = templateText(task);
  const storeDir = /jetstream\s*\{[^}]*store_dir:\s*"?([^"\s]+)/.exec(conf)?.[1];
  t.truthy(storeDir, "jetstream { store_dir } in the server config");
  const mount = blocks(task, "volume_mount").find((m) => storeDir?.startsWith(m["destination"]));
  t.truthy(mount, `store_dir ${storeDir} is on a mounted volume`);
  t.is(labelled(nats, "volume").get(mount?.["volume"])?.["type"], "host");
  t.regex(conf, /cluster\s*\{[\s\S]*routes:/);
  t.regex(conf, /server_name:/);
  const ports = staticPorts(nats);
  t.regex(conf, new RegExp(`http:\\s*0\\.0\\.0\\.0:${ports.get("monitor")}\\b`), "monitoring on the monitor port");
  t.truthy(ports.get("cluster"));
});

// ---- Connections: TLS and credentials -------------------------------------

/** nodeTasks lists every task that runs our code (`node …`), in every job file. */
async function nodeTasks(): Promise<{ file: string; where: string; task: Body }[]> {
  const files = (await readdir(path.join(root, "nomad"))).filter((f) => f.endsWith(".hcl"));
  const out: { file: string; where: string; task: Body }[] = [];
  for (const file of files) {
    const { job } = await loadJob(`nomad/${file}`);
    for (const [groupName, g] of labelled(job, "group")) {
      for (const [taskName, task] of labelled(g, "task")) {
        if (commandLine(task)[0] === "node") out.push({ file, where: `${file} ${groupName}/${taskName}`, task });
      }
    }
  }
  return out;
}

/**
 * renderedFromVariable says whether the file at `file` (a path as the task sees it, /secrets/…)
 * is rendered by one of the task's templates from a Nomad variable.
 */
function renderedFromVariable(task: Body, file: string | null | undefined): boolean {
  if (!file) return false;
  return blocks(task, "template").some(
    (tpl) => `/${tpl["destination"]}` === file && /\{\{\s*with nomadVar "nomad\/jobs[^"]*"/.test(tpl["data"]),
  );
}

/** envTemplateOf returns the data of the task's env template that sets `name`. */
function envTemplateOf(task: Body, name: string): string | undefined {
  return blocks(task, "template")
    .filter((tpl) => tpl["env"] === true)
    .map((tpl) => String(tpl["data"]))
    .find((data) => new RegExp(`^\\s*${name}=`, "m").test(data));
}

/** natsUsers lists the users nats.nomad.hcl's server config declares, with how their password is given. */
async function natsUsers(): Promise<Map<string, string>> {
  const nats = group(await loadJob("nomad/nats.nomad.hcl"), "nats");
  const [, task] = [...labelled(nats, "task")][0]!;
  const conf = templateText(task);
  return new Map([...conf.matchAll(/\{\s*user:\s*"([^"]+)",\s*password:\s*"([^"]*)"\s*\}/g)].map((m) => [m[1]!, m[2]!]));
}

test("every connection to NATS and to the database is TLS, with credentials rendered from Nomad variables", async (t) => {
  const users = await natsUsers();
  const seen = { db: new Set<string>(), nats: new Set<string>() };
  for (const { file, where, task } of await nodeTasks()) {
    const plain: Record<string, string> = Object.assign({}, ...blocks(task, "env"));
    const env = taskEnv(task);
    for (const name of Object.keys(plain)) {
      t.notRegex(name, /PASSWORD|SECRET|TOKEN|CREDS/, `${where}: ${name} is set in plain text in the job file`);
    }
    for (const name of ["DATABASE_URL", "SEARCH_DATABASE_URL"]) {
      const raw = env[name];
      if (raw === undefined) continue;
      seen.db.add(file);
      t.false(name in plain, `${where}: ${name} comes from a template, not the env block`);
      t.regex(raw, /^mysql:\/\/\{\{ \.\w+ \}\}:\{\{ \.\w+ \| urlquery \}\}@/, `${where}: ${name}'s user and password come from a variable`);
      t.notRegex(raw, /\{\{ \.root|^mysql:\/\/root[:@]/, `${where}: ${name} is not root`);
      t.regex(
        envTemplateOf(task, name) ?? "",
        /\{\{\s*with nomadVar "nomad\/jobs\/[\w-]+"/,
        `${where}: ${name}'s template reads the job's variable`,
      );
      const url = new URL(concrete(env)[name]!);
      t.is(url.searchParams.get("ssl-mode"), "VERIFY_IDENTITY", `${where}: ${name} requires TLS and checks the server's name`);
      t.true(renderedFromVariable(task, url.searchParams.get("ssl-ca")), `${where}: ${name}'s ssl-ca is rendered from a variable`);
      t.notThrows(() => parseApiConfig({ DATABASE_URL: concrete(env)[name] }), `${where}: ${name} is a URL the app takes`);
    }
    if (env["NATS_URL"] !== undefined) {
      seen.nats.add(file);
      const servers = env["NATS_URL"].split(",");
      t.true(
        servers.every((s) => s.startsWith("tls://")),
        `${where}: NATS_URL ${env["NATS_URL"]} is tls://`,
      );
      const security = parseNatsSecurity(concrete(env), env["NATS_URL"]);
      t.truthy(security.tls, `${where}: TLS to NATS`);
      t.true(renderedFromVariable(task, security.tls?.caFile), `${where}: NATS_TLS_CA is rendered from a variable`);
      if (security.credsFile !== undefined) {
        t.true(renderedFromVariable(task, security.credsFile), `${where}: NATS_CREDS_FILE is rendered from a variable`);
      } else {
        t.truthy(security.user, `${where}: a NATS user (or NATS_CREDS_FILE)`);
        t.regex(env["NATS_PASSWORD"] ?? "", /^\{\{ \.\w+ \}\}$/, `${where}: NATS_PASSWORD comes from a variable`);
        t.regex(
          envTemplateOf(task, "NATS_PASSWORD") ?? "",
          /\{\{\s*with nomadVar "nomad\/jobs\/[\w-]+"/,
          `${where}: NATS_PASSWORD's template reads the job's variable`,
        );
        t.true(
          users.has(security.user!),
          `${where}: user ${security.user} is declared in nats.nomad.hcl (${[...users.keys()].join(", ")})`,
        );
      }
    }
  }
  // Not vacuous: the jobs that talk to each are all checked.
  t.deepEqual([...seen.nats].sort(), ["bulk.nomad.hcl", "search.nomad.hcl", "webhooks.nomad.hcl"]);
  t.deepEqual([...seen.db].sort(), ["bulk.nomad.hcl", "catalog.nomad.hcl", "orders.nomad.hcl", "search.nomad.hcl", "webhooks.nomad.hcl"]);
});

test("nats: TLS for clients and routes, password users from the job's variable, certificates rendered from it", async (t) => {
  const nats = group(await loadJob("nomad/nats.nomad.hcl"), "nats");
  const [, task] = [...labelled(nats, "task")][0]!;
  const config = blocks(task, "config")[0]!;
  const confPath = config["args"][config["args"].indexOf("--config") + 1];
  const confTemplate = blocks(task, "template").find((tpl) => `/${tpl["destination"]}` === confPath);
  t.truthy(confTemplate, `the server config ${confPath} is rendered by a template`);
  const conf = String(confTemplate?.["data"]);
  const tlsBlocks = [...conf.matchAll(/tls\s*\{([^}]*)\}/g)].map((m) => m[1]!);
  t.is(tlsBlocks.length, 2, "a tls block for clients and one for routes");
  for (const block of tlsBlocks) {
    for (const key of ["cert_file", "key_file", "ca_file"]) {
      const file = new RegExp(`${key}:\\s*"([^"]+)"`).exec(block)?.[1];
      t.true(renderedFromVariable(task, file), `${key} ${file} is rendered from nomad/jobs/nats`);
    }
  }
  t.regex(/cluster\s*\{[\s\S]*\}/.exec(conf)?.[0] ?? "", /verify:\s*true/, "routes verify each other's certificate");
  t.regex(/cluster\s*\{[\s\S]*\}/.exec(conf)?.[0] ?? "", /tls\s*\{/, "routes over TLS (the cluster's tls block)");
  const users = await natsUsers();
  t.true(users.size >= 3, `users: ${[...users.keys()].join(", ")}`);
  for (const [user, password] of users) t.regex(password, /^\{\{ \.\w+ \}\}$/, `${user}'s password (hash) comes from the variable`);
  t.regex(conf, /\{\{-?\s*with nomadVar "nomad\/jobs\/nats"/);
  t.regex(String(confTemplate?.["destination"]), /^secrets\//, "the config with the users' hashes is in secrets/");
});

test("nats: the server config, rendered as Nomad would, is one nats-server accepts (nats-server -t)", async (t) => {
  const nats = group(await loadJob("nomad/nats.nomad.hcl"), "nats");
  const [, task] = [...labelled(nats, "task")][0]!;
  const dir = await mkdtemp(path.join(tmpdir(), "stockroom-natsconf-"));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  // The certificate, key and CA templates' files: one self-signed certificate stands in for all three.
  const openssl = spawnSync(
    "openssl",
    ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=nats", "-keyout", "server.key", "-out", "server.pem"],
    { cwd: dir, encoding: "utf8" },
  );
  t.is(openssl.status, 0, openssl.stderr);
  const conf = String(blocks(task, "template").find((tpl) => tpl["destination"] === "secrets/nats.conf")?.["data"]);
  // What Nomad fills in: the node's name, the variable's bcrypt hashes, the registered routes.
  const rendered = conf
    .replace(/\{\{-? ?range [^}]*\}\}[\s\S]*?\{\{-? ?end \}\}/, "nats-route://10.0.0.2:6222")
    .replace(/\{\{ env "node\.unique\.name" \}\}/g, "node-1")
    .replace(/\{\{-? ?with nomadVar "[^"]*" ?-?\}\}|\{\{-? ?end ?-?\}\}/g, "")
    .replace(/\{\{ \.\w+ \}\}/g, "$2a$11$2yD4TN3ONvh1CeYdu3vFXOaKB7ky0y4c8S4b5tX1bQ9RvoPFY1r7K")
    .replaceAll("/secrets/server.pem", path.join(dir, "server.pem"))
    .replaceAll("/secrets/ca.pem", path.join(dir, "server.pem"))
    .replaceAll("/secrets/server.key", path.join(dir, "server.key"))
    .replaceAll("/data/jetstream", path.join(dir, "js"));
  t.notRegex(rendered, /\{\{|\}\}/, "every template action is filled in");
  await writeFile(path.join(dir, "nats.conf"), rendered);
  const check = spawnSync("/usr/sbin/nats-server", ["-c", path.join(dir, "nats.conf"), "-t"], { encoding: "utf8" });
  t.is(check.status, 0, `nats-server -t: ${check.stdout}${check.stderr}${check.error ?? ""}`);
  // SIGUSR2 (lame duck) lets clients move before the server exits: kill_timeout covers the lame-duck period.
  const lameDuckMs = durationMs(/lame_duck_duration:\s*"([^"]+)"/.exec(conf)?.[1] ?? "2m");
  const graceMs = durationMs(/lame_duck_grace_period:\s*"([^"]+)"/.exec(conf)?.[1] ?? "10s");
  t.is(task["kill_signal"], "SIGUSR2");
  t.true(durationMs(String(task["kill_timeout"])) >= lameDuckMs + graceMs, "kill_timeout outlasts lame duck mode");
});

test("vitess: vtgate serves the MySQL protocol over TLS only, with its certificate from the job's variable", async (t) => {
  const vtgate = group(await loadJob("nomad/vitess.nomad.hcl"), "vtgate");
  const [, task] = [...labelled(vtgate, "task")].find(([name]) => name === "vtgate")!;
  const args = argLiterals(task);
  const flag = (name: string) => args[args.indexOf(name) + 1];
  t.true(args.includes("--mysql-server-require-secure-transport"), "plain-text clients are refused");
  t.true(renderedFromVariable(task, flag("--mysql-server-ssl-cert")), "the certificate is rendered from a variable");
  t.true(renderedFromVariable(task, flag("--mysql-server-ssl-key")), "the key is rendered from a variable");
});

test("vitess: vtgate refuses a transaction across shards, in the mode the Vitess test tier runs", async (t) => {
  const vtgate = group(await loadJob("nomad/vitess.nomad.hcl"), "vtgate");
  const [, task] = [...labelled(vtgate, "task")].find(([name]) => name === "vtgate")!;
  const args = argLiterals(task);
  // MULTI, vtgate's default, commits such a transaction shard by shard; the code keeps each transaction on its
  // merchant's shard, and the test tier (SINGLE) holds it to that.
  const tier = /--transaction-mode (\w+)/.exec(await read("tools/vitess/vttestserver.sh"))?.[1];
  t.is(tier, "SINGLE");
  t.is(args[args.indexOf("--transaction-mode") + 1], tier);
});

test("vitess: every Vitess flag is dashed and none is deprecated in the release the jobs run", async (t) => {
  const tasks = [
    ...(await Promise.all(["nomad/vitess.nomad.hcl", "nomad/vitess-tablets.nomad.hcl"].map(loadJob))).flatMap((job) =>
      [...labelled(job.job, "group")].flatMap(([, g]) => [...labelled(g, "task")]),
    ),
  ];
  const flags = tasks.flatMap(([name, task]) =>
    argLiterals(task)
      .filter((a) => a.startsWith("--"))
      .map((a) => `${name} ${a}`),
  );
  t.true(flags.length > 40, `${flags.length} flags read`);
  // Vitess 24 warns of underscored flags (25 drops them), of glog's (--logtostderr: logs are structured JSON on stderr
  // by default) and of vtctld's --cell, a no-op.
  t.deepEqual(
    flags.filter((f) => /^--\w*_|^--(logtostderr|alsologtostderr|log_dir|log-dir)$/.test(f.split(" ")[1]!) || f === "vtctld --cell"),
    [],
  );
});

/** argLiterals is a task's args; where args is an HCL expression (concat(local.topo_flags, [...])), its string literals in order. */
function argLiterals(task: Body): string[] {
  const raw = blocks(task, "config")[0]?.["args"];
  return typeof raw === "string" ? [...raw.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((m) => m[1]!) : (raw ?? []);
}

/**
 * vttestserverShards lists the shards tools/vitess/vttestserver.sh starts
 * (KEYSPACES and NUM_SHARDS), named as Vitess's vttest names them: 1 shard is
 * "0", n shards split the keyspace-id range evenly (2: -80, 80-).
 */
async function vttestserverShards(): Promise<{ keyspace: string; shard: string }[]> {
  const script = await read("tools/vitess/vttestserver.sh");
  const keyspaces = /^KEYSPACES=([\w,]+)$/m.exec(script)?.[1]?.split(",") ?? [];
  const counts = /^NUM_SHARDS=([\d,]+)$/m.exec(script)?.[1]?.split(",").map(Number) ?? [];
  if (keyspaces.length === 0 || keyspaces.length !== counts.length) throw new Error("vttestserver.sh: KEYSPACES and NUM_SHARDS");
  const hex = (n: number) => n.toString(16).padStart(2, "0");
  return keyspaces.flatMap((keyspace, k) => {
    const total = counts[k]!;
    const width = 0x100 / total;
    return Array.from({ length: total }, (_, i) => ({
      keyspace,
      shard: total === 1 ? "0" : `${i === 0 ? "" : hex(i * width)}-${i === total - 1 ? "" : hex((i + 1) * width)}`,
    }));
  });
}

test("vitess: one tablet group per shard vttestserver runs, 3 tablets on distinct hosts with their data on a host volume", async (t) => {
  const tablets = await loadJob("nomad/vitess-tablets.nomad.hcl");
  const gateway = await loadJob("nomad/vitess.nomad.hcl");
  const shards = await vttestserverShards();
  t.deepEqual(shards.slice(0, 2), [
    { keyspace: "stockroom", shard: "-80" },
    { keyspace: "stockroom", shard: "80-" },
  ]);
  // The shard list is one local; Nomad makes a group of each element.
  const listed: Body[] = tablets.doc["locals"].find((l: Body) => "shards" in l)["shards"];
  t.deepEqual(
    listed.map(({ keyspace, shard }) => `${keyspace}/${shard}`).sort(),
    shards.map(({ keyspace, shard }) => `${keyspace}/${shard}`).sort(),
    "local.shards vs vttestserver.sh",
  );
  t.is(new Set(listed.map((s) => s["slot"])).size, listed.length, "each shard has its own slot (tablet uid and ports)");
  const groups = labelled(tablets.job, "group");
  t.deepEqual([...groups.keys()].filter((name) => name !== "vtorc").sort(), shards.map((s) => `${s.keyspace}-${s.shard}`).sort());
  // Same Vitess everywhere, and the release vttestserver.sh builds (module v0.24.4 is Vitess v24.0.4).
  const version = /^VERSION=v0\.(\d+)\.(\d+)$/m.exec(await read("tools/vitess/vttestserver.sh"));
  t.is(tablets.doc["variable"]["image"][0]["default"], gateway.doc["variable"]["image"][0]["default"]);
  t.is(tablets.doc["variable"]["image"][0]["default"], `vitess/lite:v${version?.[1]}.0.${version?.[2]}`);
  // The topology and the cell are vtgate's.
  const topo = (job: JobFile): string[] => job.doc["locals"].find((l: Body) => "topo_flags" in l)["topo_flags"];
  t.deepEqual(topo(tablets), topo(gateway));
  t.is(tablets.doc["variable"]["cell"][0]["default"], gateway.doc["variable"]["cell"][0]["default"]);
  const ports = new Set<number>();
  for (const { keyspace, shard } of shards) {
    const where = `${keyspace}/${shard}`;
    const g = groups.get(`${keyspace}-${shard}`)!;
    t.is(g["count"], 3, `${where}: a primary and two replicas`);
    t.true(
      blocks(g, "constraint").some((c) => c["operator"] === "distinct_hosts" && String(c["value"]) === "true"),
      `${where}: distinct_hosts`,
    );
    for (const port of staticPorts(g).values()) {
      t.false(ports.has(port!), `${where}: port ${port} is no other shard's (a host may run a tablet of each)`);
      ports.add(port!);
    }
    const tasks = labelled(g, "task");
    const [mysqlctld, vttablet] = [tasks.get("mysqlctld"), tasks.get("vttablet")];
    t.truthy(mysqlctld && vttablet, `${where}: tasks mysqlctld and vttablet`);
    if (!mysqlctld || !vttablet) continue;
    t.deepEqual(blocks(mysqlctld, "lifecycle")[0], { hook: "prestart", sidecar: true }, `${where}: mysqlctld runs beside vttablet`);
    for (const [name, task] of [
      ["mysqlctld", mysqlctld],
      ["vttablet", vttablet],
    ] as const) {
      const mount = blocks(task, "volume_mount")[0];
      t.is(labelled(g, "volume").get(mount?.["volume"])?.["type"], "host", `${where}: ${name} mounts a host volume`);
      t.is(mount?.["destination"], "/vt/vtdataroot", `${where}: ${name}'s VTDATAROOT is the host volume`);
      // The uid comes from the host's metadata, so it stays with the data on that host.
      t.regex(
        envTemplateOf(task, "TABLET_UID") ?? "",
        /^\s*TABLET_UID=\{\{ env "meta\.vitess_tablet_uid_base" \| parseInt \| add \d+ \}\}\s*$/,
        `${where}: ${name}'s TABLET_UID is the host's uid base + the shard's slot`,
      );
    }
    const mysqlArgs = argLiterals(mysqlctld);
    const mysqlFlag = (name: string) => mysqlArgs[mysqlArgs.indexOf(name) + 1];
    t.is(mysqlFlag("--tablet-uid"), `\${TABLET_UID}`);
    t.true(renderedFromVariable(mysqlctld, mysqlFlag("--init-db-sql-file")), `${where}: init_db.sql is rendered from a variable`);
    const args = argLiterals(vttablet);
    const flag = (name: string) => args[args.indexOf(name) + 1];
    t.is(flag("--init-keyspace"), keyspace);
    t.is(flag("--init-shard"), shard);
    t.is(flag("--init-tablet-type"), "replica", `${where}: vtorc elects the primary`);
    t.is(flag("--tablet-path"), `\${var.cell}-\${TABLET_UID}`, `${where}: the alias is <cell>-<uid>`);
    t.is(flag("--mysqlctl-socket"), mysqlFlag("--socket-file"), `${where}: vttablet talks to its mysqlctld`);
    t.regex(String(blocks(vttablet, "config")[0]?.["args"]), /^\$\{concat\(local\.topo_flags,/, `${where}: vtgate's topology flags`);
    t.true(renderedFromVariable(vttablet, flag("--db-credentials-file")), `${where}: database credentials are rendered from a variable`);
    const service = blocks(g, "service")[0];
    t.true(
      blocks(service ?? {}, "check").some((c) => c["type"] === "http" && c["path"] === "/debug/health"),
      `${where}: checked on vttablet's /debug/health`,
    );
  }
  const vtorc = groups.get("vtorc");
  t.truthy(vtorc, "a vtorc group");
  const [, orc] = [...labelled(vtorc ?? {}, "task")][0] ?? [];
  t.is(commandLine(orc ?? {})[0], "vtorc");
  t.regex(String(blocks(orc ?? {}, "config")[0]?.["args"]), /^\$\{concat\(local\.topo_flags,/, "vtorc: vtgate's topology flags");
});

test("jaeger: OTLP on 4317 and 4318 and the UI on 16686, listening on all interfaces", async (t) => {
  const jaeger = group(await loadJob("nomad/jaeger.nomad.hcl"), "jaeger");
  const published = new Set(staticPorts(jaeger).values());
  const [, task] = [...labelled(jaeger, "task")][0]!;
  const conf = templateText(task);
  for (const port of [4317, 4318, 16686]) {
    t.true(published.has(port), `static port ${port}`);
    t.regex(conf, new RegExp(`endpoint:\\s*0\\.0\\.0\\.0:${port}\\b`), `listens on 0.0.0.0:${port}`);
  }
});

// ---- Vitess: the VSchema and the migrations -------------------------------

interface CreateTable {
  name: string;
  /** What stands between the parentheses of CREATE TABLE name (…). */
  body: string;
}

/** createTables finds each CREATE TABLE statement in a migration's source. */
function createTables(source: string): CreateTable[] {
  return [...source.matchAll(/CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?`?(\w+)`?\s*\(/gi)].map((m) => {
    const open = m.index + m[0].length - 1;
    return { name: m[1]!, body: source.slice(open + 1, closingParen(source, open)) };
  });
}

function closingParen(text: string, open: number): number {
  let depth = 0;
  for (let i = open; i < text.length; i++) {
    if (text[i] === "(") depth++;
    if (text[i] === ")" && --depth === 0) return i;
  }
  throw new Error(`unbalanced parentheses after: ${text.slice(open, open + 80)}`);
}

/** definitions splits a CREATE TABLE body at its top-level commas. */
function definitions(body: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < body.length; i++) {
    if (body[i] === "(") depth++;
    if (body[i] === ")") depth--;
    if (body[i] === "," && depth === 0) {
      parts.push(body.slice(start, i).trim());
      start = i + 1;
    }
  }
  return [...parts, body.slice(start).trim()];
}

function primaryKeyFirstColumn(body: string): string | undefined {
  for (const def of definitions(body)) {
    const tableKey = /^(?:CONSTRAINT\s+`?\w+`?\s+)?PRIMARY\s+KEY\s*(?:USING\s+\w+\s*)?\(\s*`?(\w+)`?/i.exec(def);
    if (tableKey) return tableKey[1];
    const columnKey = /^`?(\w+)`?\s[\s\S]*\bPRIMARY\s+KEY\b/i.exec(def);
    if (columnKey) return columnKey[1];
  }
  return undefined;
}

/** vitessViolations lists what in one migration's source a keyspace sharded by merchant_id cannot take. */
function vitessViolations(source: string): string[] {
  const problems: string[] = [];
  if (/AUTO_INCREMENT/i.test(source)) problems.push("AUTO_INCREMENT (use ULIDs or a Vitess sequence)");
  if (/\.createTable\(/.test(source)) problems.push("schema-builder createTable (write CREATE TABLE SQL so its key can be checked)");
  for (const table of createTables(source)) {
    const first = primaryKeyFirstColumn(table.body);
    if (first === undefined) problems.push(`${table.name}: no PRIMARY KEY`);
    else if (first !== "merchant_id") problems.push(`${table.name}: PRIMARY KEY starts with ${first}, not merchant_id`);
  }
  return problems;
}

interface Migrations {
  /** Migration set (service folder) → { file → source }. */
  sets: Map<string, Map<string, string>>;
  tables: string[];
}

/** loadMigrations reads services/<service>/migrations/*.ts. */
async function loadMigrations(): Promise<Migrations> {
  const sets = new Map<string, Map<string, string>>();
  for (const service of await readdir(path.join(root, "services"))) {
    const folder = path.join("services", service, "migrations");
    const files = await readdir(path.join(root, folder)).catch(() => []);
    const sources = new Map<string, string>();
    for (const file of files.filter((f) => f.endsWith(".ts"))) sources.set(file, await read(path.join(folder, file)));
    if (sources.size > 0) sets.set(service, sources);
  }
  const tables = [...sets.values()].flatMap((s) => [...s.values()]).flatMap((src) => createTables(src).map((c) => c.name));
  return { sets, tables };
}

test("the schema check rejects AUTO_INCREMENT ids and keys that do not lead with merchant_id", (t) => {
  t.deepEqual(vitessViolations("CREATE TABLE a (id BIGINT AUTO_INCREMENT, merchant_id VARCHAR(26), PRIMARY KEY (id))"), [
    "AUTO_INCREMENT (use ULIDs or a Vitess sequence)",
    "a: PRIMARY KEY starts with id, not merchant_id",
  ]);
  t.deepEqual(vitessViolations("CREATE TABLE b (merchant_id VARCHAR(26), sku VARCHAR(9), KEY k (merchant_id, sku))"), [
    "b: no PRIMARY KEY",
  ]);
  t.deepEqual(vitessViolations("CREATE TABLE c (merchant_id VARCHAR(26) NOT NULL PRIMARY KEY, price DECIMAL(10, 2))"), []);
  t.deepEqual(vitessViolations("CREATE TABLE d (merchant_id CHAR(26), x INT, CONSTRAINT pk PRIMARY KEY (merchant_id, x))"), []);
});

test("every migration's table leads its PRIMARY KEY with merchant_id and has no AUTO_INCREMENT", async (t) => {
  const { sets, tables } = await loadMigrations();
  t.true(tables.length > 0, "found CREATE TABLE statements");
  for (const [set, sources] of sets) {
    for (const [file, source] of sources) t.deepEqual(vitessViolations(source), [], `${set}/${file}`);
  }
});

/** Migration sets with a keyspace of their own; every other set lives in stockroom (vitess/vschema.json). */
const OWN_KEYSPACES = [{ vschema: "nomad/vitess/search-vschema.json", sets: ["search"] }];

/** keyspaces pairs each VSchema file with the migration sets, and so the tables, its keyspace holds. */
async function keyspaces(): Promise<{ vschema: string; sets: string[]; tables: string[] }[]> {
  const { sets } = await loadMigrations();
  const elsewhere = new Set(OWN_KEYSPACES.flatMap((k) => k.sets));
  const all = [{ vschema: "nomad/vitess/vschema.json", sets: [...sets.keys()].filter((set) => !elsewhere.has(set)) }, ...OWN_KEYSPACES];
  return all.map((k) => ({
    ...k,
    tables: k.sets.flatMap((set) => [...(sets.get(set)?.values() ?? [])].flatMap((src) => createTables(src).map((c) => c.name))),
  }));
}

test("each keyspace's VSchema shards exactly its migrations' tables, each by merchant_id with xxhash", async (t) => {
  for (const { vschema: file, tables } of await keyspaces()) {
    const vschema = JSON.parse(await read(file));
    t.is(vschema.sharded, true, file);
    const entries = Object.entries<Body>(vschema.tables ?? {});
    const sharded = entries.filter(([name]) => !name.startsWith("kysely_migration_"));
    t.deepEqual(sharded.map(([name]) => name).sort(), [...tables].sort(), `${file}: tables in the VSchema vs CREATE TABLE in migrations`);
    for (const [name, table] of sharded) {
      const primary = table["column_vindexes"][0];
      t.is(primary?.["column"] ?? primary?.["columns"]?.[0], "merchant_id", `${name}'s primary vindex column`);
      t.is(vschema.vindexes?.[primary?.["name"]]?.["type"], "xxhash", `${name}'s primary vindex type`);
    }
  }
});

test("each keyspace's VSchema routes its migration sets' bookkeeping tables by their key, and nothing else", async (t) => {
  // `npm run migrate` through vtgate reads and writes kysely_migration_<set>
  // and its lock table; a sharded keyspace routes only the tables it lists.
  // Not "pinned": vtgate refuses an INSERT into a pinned table ("does not
  // have a primary vindex"; tools/vitess/probe-migrations.ts), so each has a
  // primary vindex on its primary key: name, and the lock table's id.
  for (const { vschema: file, sets } of await keyspaces()) {
    const vschema = JSON.parse(await read(file));
    const others = Object.entries<Body>(vschema.tables ?? {}).filter(([name]) => name.startsWith("kysely_migration_"));
    const expected = sets.flatMap((set) => [`kysely_migration_${set}`, `kysely_migration_lock_${set}`]);
    t.deepEqual(others.map(([name]) => name).sort(), expected.sort(), file);
    for (const [name, table] of others) {
      const primary = table["column_vindexes"]?.[0];
      t.is(primary?.["column"], name.startsWith("kysely_migration_lock_") ? "id" : "name", `${name}'s primary vindex column`);
      t.is(vschema.vindexes?.[primary?.["name"]]?.["type"], "xxhash", `${name}'s primary vindex type`);
      t.is(table["pinned"], undefined, `${name} is not pinned`);
    }
  }
});

test("the release image installs every workspace: each one's package.json is copied before npm ci", async (t) => {
  const dockerfile = await read("nomad/Dockerfile");
  const install = dockerfile.indexOf("RUN npm ci");
  t.true(install > 0, "the image runs npm ci");
  const workspaces = (JSON.parse(await read("package.json")) as { workspaces: string[] }).workspaces;
  for (const ws of workspaces) {
    const copy = dockerfile.indexOf(`COPY ${ws}/package.json ${ws}/`);
    t.true(copy >= 0 && copy < install, `${ws}/package.json is copied before npm ci`);
  }
});
