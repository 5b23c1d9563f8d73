/**
 * A work-queue consumer through a NATS outage (its own nats-server, shut
 * down and started again, as an operator restarts it): its pulls back off
 * while the server is away, the outage is one warning rather than a line
 * per pull, and once the connection is back it pulls at once instead of
 * when its backoff (by then seconds) ends. A connection whose server is
 * away closes without an error.
 */
import test from "ava";
import { connect } from "@nats-io/transport-node";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connectNats, consumeWorkQueue, ensureWorkQueue, publishWithId } from "../src/nats/jetstream.ts";
import { recordingLogger, startNatsServer, waitFor } from "../testing/index.ts";

const natsServer = await startNatsServer("work-queue-outage");
test.after.always(() => natsServer.close());

test.serial("a consumer pulls again as soon as NATS is back, after one warning for the outage", async (t) => {
  // Short request timeouts and reconnect waits, so failed pulls pile up and the backoff grows within seconds.
  const nc = await connect({ servers: natsServer.url, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
  const js = jetstream(nc, { timeout: 200 });
  const jsm = await jetstreamManager(nc);
  const publisher = jsm.jetstream(); // the default timeout: it publishes while the connection comes back
  const spec = {
    stream: "OUTAGE_WORK",
    subjects: ["outage.>"],
    durable: "outage-workers",
    ackWaitMs: 5_000,
    maxDeliver: 5,
    maxAckPending: 10,
  };
  await ensureWorkQueue(jsm, spec);
  const log = recordingLogger();
  const handled: { id: string; at: number }[] = [];
  const consumer = consumeWorkQueue(
    { nc, js },
    { stream: spec.stream, durable: spec.durable, concurrency: 2, log, pullExpiresMs: 1_000 },
    async (msg) => void handled.push({ id: new TextDecoder().decode(msg.data), at: Date.now() }),
    async () => {},
  );
  t.teardown(async () => {
    await consumer.stop();
    await nc.close();
  });
  await publishWithId(publisher, "outage.work", new TextEncoder().encode("before"), "before");
  await waitFor("the first message", async () => (handled.length === 1 ? true : undefined), 10_000);

  await natsServer.shutDown();
  // 18 s: six failed pulls (backing off 0.5, 1, 2, 4, 8 s) and about 2 s into the sixth pause, of 16 s.
  await new Promise((r) => setTimeout(r, 18_000));
  const failedLines = log.lines.filter((l) => l.level !== "info");
  t.is(failedLines.length, 1, `one line for the outage: ${JSON.stringify(log.lines.map((l) => l.msg))}`);
  t.like(failedLines[0], { level: "warn", msg: "work queue pull failed: the message broker is unavailable; retrying with backoff" });
  t.like(failedLines[0]!.fields, { stream: spec.stream, durable: spec.durable, backend: "message broker" });

  await natsServer.start();
  // Published once the server takes it (its first requests may time out while JetStream comes up).
  for (let tries = 1; ; tries++) {
    try {
      await publishWithId(publisher, "outage.work", new TextEncoder().encode("after"), "after");
      break;
    } catch (error) {
      if (tries === 10) throw error;
    }
  }
  const publishedAt = Date.now();
  const after = await waitFor("the message sent after the restart", async () => handled.find((h) => h.id === "after"), 20_000);
  const tookMs = after.at - publishedAt;
  t.log(`handled ${tookMs} ms after it was published`);
  t.true(tookMs < 2_000, `pulled again ${tookMs} ms after the restart (its backoff then was 16 s)`);
  // Said once the pull that took it has ended (it waits up to pullExpiresMs).
  const resumed = await waitFor("the resumed line", async () => log.lines.find((l) => l.msg === "work queue pull resumed"), 5_000);
  t.true((resumed.fields["failedRuns"] as number) >= 4, JSON.stringify(resumed.fields));
});

test.serial("a connection whose server is away closes without an error (a process stopped during the outage exits cleanly)", async (t) => {
  const nats = await connectNats({ servers: natsServer.url, name: "outage-close" });
  await natsServer.shutDown();
  t.teardown(() => natsServer.start());
  await new Promise((r) => setTimeout(r, 500));
  await t.notThrowsAsync(nats.close());
  t.true(nats.nc.isClosed());
});
