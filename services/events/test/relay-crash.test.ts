/**
 * The outbox relay killed mid-stream, end to end: 10,000 mixed catalog
 * changes (creates, updates, stock adjustments, deletes and recreates)
 * across 100 products through the Catalog RPC handlers (called in process:
 * see directCatalog), 16 at a time, while the relay runs as its
 * own process (services/events/src/relay-main.ts, as Nomad runs it) and is
 * killed with SIGKILL twice and restarted each time; the search projector
 * runs here. At the end the search store equals the catalog, the stream
 * holds each product's versions in increasing order, and no event id is
 * stored twice.
 */
import test from "ava";
import { spawn, type ChildProcess } from "node:child_process";
import path from "node:path";
import { ConnectError, createContextValues, createHandlerContext } from "@connectrpc/connect";
import { create, type DescMessage, type MessageInitShape } from "@bufbuild/protobuf";
import {
  AdjustStockRequestSchema,
  CatalogService,
  CreateProductRequestSchema,
  DeleteProductRequestSchema,
  UpdateProductRequestSchema,
} from "@stockroom/sdk/gen/stockroom/catalog/v1/catalog_service_pb.js";
import { createCatalogService, rowToProduct } from "@stockroom/catalog";
import { kPrincipal } from "@stockroom/common/rpc";
import { DeliverPolicy } from "@nats-io/jetstream";
import { domainSubjects, EVENT_HEADERS } from "../src/event-stream.ts";
import { waitFor, type TestMerchant } from "@stockroom/common/testing";
import { entryFromProduct } from "@stockroom/search";
import {
  documentTerms,
  entryText,
  merchantTag,
  productInit,
  type SearchDocumentRow,
  startSearchHarness,
  unpublished,
  type SearchHarness,
} from "@stockroom/search/testing";

const PRODUCTS = 100;
const CHANGES = 10_000;
const IN_FLIGHT = 16;
/** The relay is killed once the stream holds this share of the expected events, and again at the second. */
const KILL_AT = [0.3, 0.65];
const relayMain = path.join(import.meta.dirname, "..", "src", "relay-main.ts");

/**
 * directCatalog calls the Catalog RPC handlers in this process, skipping the
 * network and the auth interceptor: the same validation and the same
 * transactions (idempotency claim, row, audit entry, outbox event), at about
 * twice the rate a client gets through HTTP/2 on a 2-core machine.
 */
function directCatalog(h: SearchHarness, merchant: TestMerchant) {
  const impl = createCatalogService({ db: h.db });
  const contextValues = createContextValues().set(kPrincipal, {
    merchantId: merchant.merchantId,
    keyId: "relay-crash-test",
    actor: "relay-crash-test",
    tier: "standard",
  });
  const ctx = (method: keyof typeof CatalogService.method) =>
    createHandlerContext({
      service: CatalogService,
      method: CatalogService.method[method],
      protocolName: "in-process",
      requestMethod: "POST",
      url: "/",
      contextValues,
    });
  const req = <S extends DescMessage>(schema: S, init: MessageInitShape<S>) => create(schema, init);
  return {
    createProduct: (init: MessageInitShape<typeof CreateProductRequestSchema>) =>
      impl.createProduct(req(CreateProductRequestSchema, init), ctx("createProduct")),
    updateProduct: (init: MessageInitShape<typeof UpdateProductRequestSchema>) =>
      impl.updateProduct(req(UpdateProductRequestSchema, init), ctx("updateProduct")),
    adjustStock: (init: MessageInitShape<typeof AdjustStockRequestSchema>) =>
      impl.adjustStock(req(AdjustStockRequestSchema, init), ctx("adjustStock")),
    deleteProduct: (init: MessageInitShape<typeof DeleteProductRequestSchema>) =>
      impl.deleteProduct(req(DeleteProductRequestSchema, init), ctx("deleteProduct")),
  };
}

/** A small seeded PRNG (mulberry32), so a failure can be replayed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface RelayProcess {
  child: ChildProcess;
  exited: Promise<void>;
  stderr: string[];
}

/** startRelayProcess runs relay-main.ts on the harness's catalog database and event stream. */
function startRelayProcess(h: SearchHarness): RelayProcess {
  const child = spawn(process.execPath, [relayMain], {
    env: {
      ...process.env,
      DATABASE_URL: h.api.databaseUrl,
      NATS_URL: process.env["TEST_NATS_URL"] ?? "nats://127.0.0.1:4222",
      EVENTS_STREAM: h.events.stream,
      EVENTS_SUBJECT_PREFIX: h.events.subjectPrefix,
      EVENTS_MAX_AGE_MS: String(h.events.maxAgeMs),
      RELAY_POLL_MS: "5",
      // Small rounds: more of them, so a kill lands mid-round more often.
      RELAY_BATCH_SIZE: "100",
      LOG_LEVEL: "warn",
      METRICS_PORT: "off",
      HEALTH_PROBE_MS: "0",
      OTEL_EXPORTER_OTLP_ENDPOINT: "",
    },
    stdio: ["ignore", "ignore", "pipe"],
  });
  const stderr: string[] = [];
  child.stderr!.on("data", (d: Buffer) => stderr.push(d.toString()));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  return { child, exited, stderr };
}

async function killRelay(relay: RelayProcess): Promise<void> {
  if (relay.child.exitCode === null && relay.child.signalCode === null) relay.child.kill("SIGKILL");
  await relay.exited;
}

async function streamMessages(h: SearchHarness): Promise<number> {
  return (await h.nats.jsm.streams.info(h.events.stream)).state.messages;
}

interface Tally {
  creates: number;
  updates: number;
  adjustments: number;
  deletes: number;
  recreates: number;
}

/**
 * writeChanges makes `CHANGES` changes, 100 per product: each product's
 * changes in sequence (so each one is known to succeed and be a change),
 * IN_FLIGHT products at a time. A product that does not exist is created
 * (again, after a delete); one that does is updated (title and price, at
 * times description, attributes or status), has its stock adjusted, or now
 * and then is deleted.
 */
async function writeChanges(h: SearchHarness, merchant: TestMerchant, onChange: () => void): Promise<Tally> {
  const catalog = directCatalog(h, merchant);
  const tally: Tally = { creates: 0, updates: 0, adjustments: 0, deletes: 0, recreates: 0 };
  const perProduct = CHANGES / PRODUCTS;
  const products = Array.from({ length: PRODUCTS }, (_, i) => ({
    sku: `SKU-${String(i).padStart(3, "0")}`,
    exists: false,
    created: false,
    stock: 0,
    n: 0,
  }));
  let next = 0;
  const worker = async (w: number) => {
    const random = prng(1000 + w);
    for (let i = next++; i < PRODUCTS; i = next++) {
      const p = products[i]!;
      while (p.n < perProduct) {
        p.n++;
        const r = random();
        const label = `${p.sku} change ${p.n}`;
        try {
          if (!p.exists) {
            p.stock = Math.floor(random() * 50);
            await catalog.createProduct({
              product: productInit(p.sku, {
                title: `Product ${p.sku} take ${p.n}`,
                stock: p.stock,
                attributes: { color: "red", size: `s${p.n}` },
              }),
            });
            if (p.created) tally.recreates++;
            else tally.creates++;
            p.exists = p.created = true;
          } else if (r < 0.45) {
            const paths = ["title", "price"];
            const product: Record<string, unknown> = {
              sku: p.sku,
              title: `Product ${p.sku} v${p.n}`,
              price: { currencyCode: "EUR", minorUnits: BigInt(1000 + p.n) },
            };
            if (random() < 0.3) paths.push("description"), (product["description"] = `Described at change ${p.n}`);
            if (random() < 0.3)
              paths.push("attributes"), (product["attributes"] = { color: ["red", "blue", "green"][p.n % 3]!, size: `s${p.n}` });
            if (random() < 0.2) paths.push("status"), (product["status"] = [1, 2, 3][p.n % 3]);
            await catalog.updateProduct({ product, updateMask: { paths } });
            tally.updates++;
          } else if (r < 0.96) {
            let delta = Math.floor(random() * 10) + 1;
            if (p.stock >= 5 && random() < 0.5) delta = -Math.min(p.stock, delta);
            await catalog.adjustStock({ sku: p.sku, delta });
            p.stock += delta;
            tally.adjustments++;
          } else {
            await catalog.deleteProduct({ sku: p.sku });
            p.exists = false;
            tally.deletes++;
          }
        } catch (error) {
          throw new Error(
            `${label} failed: ${error instanceof ConnectError ? error.rawMessage : error instanceof Error ? error.message : String(error)}`,
          );
        }
        onChange();
      }
    }
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, (_, w) => worker(w)));
  return tally;
}

interface StreamEvent {
  seq: number;
  id: string;
  aggregate: string;
  version: number;
}

/** readStream reads every catalog event of the stream with an ordered consumer, in stream order. */
async function readStream(h: SearchHarness): Promise<StreamEvent[]> {
  const total = (await h.nats.jsm.streams.info(h.events.stream)).state.messages;
  const consumer = await h.nats.js.consumers.get(h.events.stream, {
    // A string becomes filter_subject; a list would need nats-server 2.10.
    filter_subjects: domainSubjects(h.events, "catalog"),
    deliver_policy: DeliverPolicy.All,
  });
  const out: StreamEvent[] = [];
  if (total === 0) return out;
  const messages = await consumer.consume({ max_messages: 1000 });
  for await (const m of messages) {
    out.push({
      seq: m.seq,
      id: m.headers?.get("Nats-Msg-Id") ?? "",
      aggregate: m.headers?.get(EVENT_HEADERS.aggregateId) ?? "",
      version: Number(m.headers?.get(EVENT_HEADERS.aggregateVersion)),
    });
    if (m.info.pending === 0) break;
  }
  await messages.close();
  return out;
}

test("10,000 mixed changes with the relay process killed and restarted twice: search equals the catalog, versions in order, no event stored twice", async (t) => {
  t.timeout(180_000);
  const h = await startSearchHarness("relay_kill");
  const relays: RelayProcess[] = [];
  t.teardown(async () => {
    for (const r of relays) await killRelay(r);
    await h.close();
  });
  const merchant = await h.newMerchant();
  const projector = await h.startProjector();

  relays.push(startRelayProcess(h));
  // The kills: each once the stream holds its share of the events, after the current relay has published some.
  let changes = 0;
  const kills: { afterChanges: number; streamMessages: number; unpublished: number }[] = [];
  const killer = (async () => {
    for (const share of KILL_AT) {
      await waitFor(
        `the stream to hold ${share * 100}% of the events`,
        async () => ((await streamMessages(h)) >= share * CHANGES ? true : undefined),
        120_000,
      );
      const relay = relays.at(-1)!;
      await killRelay(relay);
      kills.push({ afterChanges: changes, streamMessages: await streamMessages(h), unpublished: await unpublished(h) });
      relays.push(startRelayProcess(h));
    }
  })();
  killer.catch(() => {}); // awaited below; this only keeps an early failure from being reported as unhandled
  const t0 = performance.now();
  const tally = await writeChanges(h, merchant, () => changes++);
  const writeSeconds = (performance.now() - t0) / 1000;
  await killer;
  t.log(`wrote ${changes} changes in ${writeSeconds.toFixed(1)} s:`, tally, "kills:", kills);

  t.is(changes, CHANGES);
  t.is(kills.length, 2, "the relay was killed twice");
  t.true(
    kills.some((k) => k.unpublished > 0),
    "at least one kill left committed events unpublished",
  );

  const rows = await h.db
    .selectFrom("outbox_events")
    .select(["event_id", "aggregate_id", "aggregate_version"])
    .where("merchant_id", "=", merchant.merchantId)
    .execute();
  t.is(rows.length, CHANGES, "one outbox event per change");
  await waitFor("every outbox event published", async () => ((await unpublished(h)) === 0 ? true : undefined), 60_000);
  await waitFor("the projector to apply every event", async () => ((await projector.lag()).pendingEvents === 0 ? true : undefined), 60_000);
  for (const r of relays.slice(0, -1)) t.not(r.child.signalCode, null, "the killed relays died of SIGKILL");
  t.is(
    relays.at(-1)!.child.exitCode,
    null,
    `the last relay still runs${relays
      .flatMap((r) => r.stderr)
      .join("")
      .slice(0, 2000)}`,
  );

  // The stream: every event exactly once, each product's versions strictly increasing.
  const events = await readStream(h);
  const ids = new Set(events.map((e) => e.id));
  t.is(events.length, CHANGES, "the stream holds one message per change");
  t.is(ids.size, events.length, "no event id was stored twice");
  t.deepEqual([...ids].sort(), rows.map((r) => r.event_id).sort(), "the stream's event ids are the outbox's");
  const last = new Map<string, number>();
  let outOfOrder = 0;
  for (const e of events) {
    const previous = last.get(e.aggregate) ?? 0;
    if (e.version <= previous) outOfOrder++;
    last.set(e.aggregate, e.version);
  }
  t.is(outOfOrder, 0, "each product's versions strictly increase in stream order");
  const expectedVersions = new Map<string, number>();
  for (const r of rows)
    expectedVersions.set(r.aggregate_id, Math.max(expectedVersions.get(r.aggregate_id) ?? 0, Number(r.aggregate_version)));
  t.deepEqual(new Map([...last].sort()), new Map([...expectedVersions].sort()), "each product's last version reached the stream");
  t.is(last.size, tally.creates + tally.recreates, "one aggregate per created or recreated product");

  // The search store equals the catalog: live products identical, deleted ones absent or tombstoned.
  const catalogRows = await h.db.selectFrom("products").selectAll().where("merchant_id", "=", merchant.merchantId).execute();
  const searchRows = await h.searchDb.selectFrom("search_documents").selectAll().where("merchant_id", "=", merchant.merchantId).execute();
  /** The row's words (their order is the text's), and its fields besides. */
  const content = (e: Omit<SearchDocumentRow, "applied_at" | "changed_at" | "merchant_id" | "terms_format">) => ({
    sku: e.sku,
    product_id: e.product_id,
    version: Number(e.version),
    deleted: Number(e.deleted),
    title: e.title,
    words: e.words.split(" ").sort().join(" "),
    grams: e.grams.split(" ").sort().join(" "),
    price_minor: Number(e.price_minor),
    currency: e.currency,
    stock: Number(e.stock),
    status: e.status,
  });
  const tag = merchantTag(merchant.merchantId);
  const live = new Map(
    catalogRows.map((r) => {
      const entry = entryFromProduct(merchant.merchantId, rowToProduct(r));
      return [r.sku, content({ ...entry, ...documentTerms(tag, entryText(entry)) })];
    }),
  );
  const held = new Map(searchRows.map((r) => [r.sku, content(r)]));
  const mismatched: string[] = [];
  for (const [sku, want] of live) {
    const got = held.get(sku);
    if (JSON.stringify(got) !== JSON.stringify(want))
      mismatched.push(`${sku}: search ${JSON.stringify(got)} vs catalog ${JSON.stringify(want)}`);
  }
  for (const [sku, got] of held)
    if (!live.has(sku) && got.deleted !== 1) mismatched.push(`${sku}: live in search, absent from the catalog`);
  t.deepEqual(mismatched, [], "search equals the catalog");
  t.is(live.size, PRODUCTS - [...held.values()].filter((r) => r.deleted === 1).length, "every SKU is live in both or tombstoned in search");
  t.true(projector.stats().applied >= CHANGES, "the projector applied every event");
});
