import test from "ava";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Health, HealthCheckResponse_ServingStatus as Status } from "@stockroom/sdk/gen/grpc/health/v1/health_pb.js";
import { startApi } from "../src/rpc/app.ts";
import { parseApiConfig } from "../src/config.ts";
import { ensureDatabase } from "../src/db/database.ts";
import { createMetrics } from "../src/observe/metrics.ts";
import { connectNats } from "../src/nats/jetstream.ts";
import { mysqlCheck, startDependencyProbes } from "../src/observe/probes.ts";
import { parsePrometheusText, sumOf } from "../testing/prom-text.ts";
import { freePort, testDatabaseUrl, waitFor, dropTestDatabase, startNatsServer } from "../testing/index.ts";

// This file runs its own nats-server (never the shared one) so it can stop it.
const natsServer = await startNatsServer("health");
const url = testDatabaseUrl("health");
await ensureDatabase(url);
test.after.always(async () => {
  natsServer.close();
  await dropTestDatabase(url);
});

test("health turns NOT_SERVING while NATS is down and SERVING again when it is back; /readyz and the metrics agree", async (t) => {
  const nats = await connectNats({ servers: natsServer.url, name: "health-test" });
  const config = {
    ...parseApiConfig({}),
    port: 0,
    metricsPort: 0,
    databaseUrl: url,
    logLevel: "silent" as const,
    healthProbeMs: 200,
    slaFlushMs: 0,
    drainMs: 1_000,
  };
  const api = await startApi({ name: "test-health", config, migrate: true, modules: () => [], nats: nats.nc });
  t.teardown(async () => {
    await api.stop();
    await nats.close();
  });
  const health = createClient(Health, createGrpcTransport({ baseUrl: api.server.url }));
  const status = async () => (await health.check({})).status;
  const readyz = async () => (await fetch(`${api.metricsServer!.url}/readyz`)).status;
  const natsUp = async () =>
    sumOf(parsePrometheusText(await api.metrics.registry.metrics()), "stockroom_dependency_up", { dependency: "nats" });
  t.is(await status(), Status.SERVING);
  t.is(await readyz(), 200);

  natsServer.kill();
  await waitFor("NOT_SERVING", async () => ((await status()) === Status.NOT_SERVING ? true : undefined), 10_000);
  t.is(await readyz(), 503);
  t.is(await natsUp(), 0);

  await natsServer.start();
  await waitFor("SERVING again", async () => ((await status()) === Status.SERVING ? true : undefined), 20_000);
  t.is(await readyz(), 200);
  t.is(await natsUp(), 1);
});

test("an unreachable MySQL fails its probe and marks the dependency down", async (t) => {
  const closedPort = await freePort();
  const down = mysqlCheck(`mysql://root@127.0.0.1:${closedPort}/nothing`);
  await t.throwsAsync(down.check(500));
  await down.close?.();
  const up = mysqlCheck(url);
  await t.notThrowsAsync(up.check(2_000));
  await up.close?.();

  const metrics = createMetrics({ processMetrics: false });
  const changes: boolean[] = [];
  const probes = startDependencyProbes({
    checks: [mysqlCheck(`mysql://root@127.0.0.1:${closedPort}/nothing`)],
    everyMs: 50,
    onChange: (allUp) => changes.push(allUp),
    metrics,
  });
  await waitFor("the probe to give up on MySQL", async () => (probes.up ? undefined : true), 5_000);
  await probes.stop();
  t.deepEqual(changes, [false]);
  t.deepEqual(probes.down, ["mysql"]);
  t.is(sumOf(parsePrometheusText(await metrics.registry.metrics()), "stockroom_dependency_up", { dependency: "mysql" }), 0);
});
