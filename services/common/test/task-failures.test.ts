/**
 * A background task through an outage logs a few lines, not one per run,
 * and backs off: taskFailures' policy on real errors (mysql2 refused by a
 * port nobody listens on, and an ordinary fault), then every() running a
 * real query through a proxy in front of MariaDB that is taken away and
 * brought back.
 */
import test from "ava";
import { sql } from "kysely";
import { createDatabase } from "../src/db/database.ts";
import { every } from "../src/periodic.ts";
import { taskFailures } from "../src/task-failures.ts";
import { freePort, recordingLogger, startDropProxy, testDatabaseUrl, waitFor } from "../testing/index.ts";

/** refused is what mysql2 throws for a database nobody listens on. */
async function refused(): Promise<unknown> {
  const url = new URL(testDatabaseUrl("task_failures"));
  url.hostname = "127.0.0.1";
  url.port = String(await freePort());
  const db = createDatabase({ url: url.toString(), poolSize: 1 });
  try {
    await sql`SELECT 1`.execute(db);
  } catch (error) {
    return error;
  } finally {
    await db.destroy();
  }
  throw new Error("expected the query to fail");
}

test("an outage is one warning naming the backend, repeated once a minute with its count, and one line when the task resumes", async (t) => {
  const log = recordingLogger();
  let now = 1_000_000;
  const failures = taskFailures(log, "order sweep", { fields: { shard: "s1" }, now: () => now });
  const outage = await refused();
  for (let i = 0; i < 20; i++) {
    failures.failed(outage);
    now += 2_000;
  }
  t.is(failures.failures, 20);
  t.is(log.lines.length, 1, "twenty failed runs in 40 s: one line");
  t.like(log.lines[0], { level: "warn", msg: "order sweep failed: the database is unavailable; retrying with backoff" });
  t.like(log.lines[0]!.fields, { shard: "s1", failures: 1, backend: "database" });
  t.is((log.lines[0]!.fields["error"] as { code?: string }).code, "ECONNREFUSED", "the first line carries the cause");

  now += 21_000; // a minute since the first line
  failures.failed(outage);
  t.is(log.lines.length, 2);
  t.like(log.lines[1]!.fields, { failures: 21, sinceMs: 61_000 });

  // Another error in the same run of failures says so at once, at error level: it is not the outage.
  failures.failed(new Error("Unknown column 'x' in 'field list'"));
  t.is(log.lines.length, 3);
  t.like(log.lines[2], { level: "error", msg: "order sweep failed" });

  now += 500;
  failures.succeeded();
  t.is(log.lines.length, 4);
  t.like(log.lines[3], { level: "info", msg: "order sweep resumed" });
  t.like(log.lines[3]!.fields, { shard: "s1", failedRuns: 22, afterMs: 61_500 });
  failures.succeeded();
  t.is(log.lines.length, 4, "a success after a success says nothing");

  // The next outage starts over: its first failure is logged again.
  failures.failed(outage);
  t.is(log.lines.length, 5);
  t.like(log.lines[4]!.fields, { failures: 1 });
});

test("delayMs: the interval after a success, doubling per failure up to the cap, never below the interval", (t) => {
  const failures = taskFailures(recordingLogger(), "t", { maxDelayMs: 10_000 });
  t.is(failures.delayMs(1_000), 1_000);
  const delays: number[] = [];
  for (let i = 0; i < 6; i++) {
    failures.failed(new Error("x"));
    delays.push(failures.delayMs(1_000));
  }
  t.deepEqual(delays, [1_000, 2_000, 4_000, 8_000, 10_000, 10_000]);
  t.is(failures.delayMs(15_000), 15_000, "a task slower than the cap keeps its own interval");
  failures.succeeded();
  t.is(failures.delayMs(1_000), 1_000);
});

test("every() through a database taken away: the runs back off, one warning, and the task resumes by itself", async (t) => {
  const upstream = new URL(testDatabaseUrl("task_failures"));
  const proxy = await startDropProxy(`tcp://${upstream.hostname}:${upstream.port || 3306}`);
  const proxied = new URL(upstream);
  proxied.port = String(proxy.port);
  proxied.pathname = "/mysql"; // the server's own schema: the task only asks SELECT 1
  const db = createDatabase({ url: proxied.toString(), poolSize: 1 });
  const log = recordingLogger();
  const failures = taskFailures(log, "probe", { maxDelayMs: 400 });
  const runs: number[] = [];
  const task = every(
    20,
    async () => {
      runs.push(Date.now());
      await sql`SELECT 1`.execute(db);
    },
    failures,
  );
  t.teardown(async () => {
    await task.stop();
    await db.destroy();
    await proxy.close();
  });
  await waitFor("three runs", async () => (runs.length >= 3 ? true : undefined));
  t.is(log.lines.length, 0);

  await proxy.refuse();
  await waitFor("six failed runs", async () => (failures.failures >= 6 ? true : undefined), 10_000);
  const down = runs.slice(-4);
  const gaps = down.slice(1).map((at, i) => at - down[i]!);
  // Every 20 ms while it answered; doubling from there while it is away (20, 40, …, 320, then 400, the cap).
  t.true(gaps.at(-1)! >= 300 && gaps[0]! >= 70, `runs back off while the database is away: ${gaps.join(", ")} ms`);
  t.is(log.lines.filter((l) => l.level !== "info").length, 1, "one line for the outage");
  t.like(log.lines[0], { level: "warn", msg: "probe failed: the database is unavailable; retrying with backoff" });

  await proxy.accept();
  const resumed = await waitFor("the task to resume", async () => log.lines.find((l) => l.msg === "probe resumed"), 10_000);
  t.is(failures.failures, 0);
  t.true((resumed.fields["failedRuns"] as number) >= 6);
  // Back on its interval.
  const before = runs.length;
  await waitFor("five more runs", async () => (runs.length >= before + 5 ? true : undefined), 2_000);
  t.pass();
});
