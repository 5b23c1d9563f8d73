/**
 * Webhook test support: a real API (catalog + notifications) on its own
 * database, the real outbox relay and dispatcher on a private event stream
 * of the shared NATS server, and a local HTTP receiver whose answer each
 * path chooses.
 */
import { randomBytes } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { DEFAULT_EVENT_STREAM, type EventStreamConfig, DEFAULT_RELAY, startOutboxRelay, type OutboxRelay } from "@stockroom/events";
import { createLogger } from "@stockroom/common/observe";
import { connectNats, type NatsClient } from "@stockroom/common/nats";
import { startTestApi, type TestApi } from "@stockroom/common/testing";
import { catalogModule, type CatalogTables } from "@stockroom/catalog";
import { DEFAULT_DISPATCHER, type DispatcherConfig } from "../src/config.ts";
import { startWebhookDispatcher, type WebhookDispatcher } from "../src/dispatcher.ts";
import { notifyModule } from "../src/module.ts";
import type { NotifyDb } from "../src/store.ts";
import type { NotifyTables } from "../src/store.ts";

export interface Received {
  path: string;
  headers: http.IncomingHttpHeaders;
  body: string;
  /** When the request arrived (Date.now()). */
  at: number;
  /** The status the receiver answered. */
  status: number;
}

/** Behaviour is how the receiver answers a path: a status, after a delay. */
export interface Behaviour {
  status: number;
  delayMs?: number;
}

export interface Receiver {
  url(path: string): string;
  received: Received[];
  /** on sets a path's answer (200 at once unless set). */
  on(path: string, behaviour: Behaviour): void;
  /** at lists what a path received, in arrival order. */
  at(path: string): Received[];
  close(): Promise<void>;
}

export async function startReceiver(): Promise<Receiver> {
  const received: Received[] = [];
  const behaviours = new Map<string, Behaviour>();
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const path = req.url ?? "/";
      const b = behaviours.get(path) ?? { status: 200 };
      received.push({ path, headers: req.headers, body: Buffer.concat(chunks).toString("utf8"), at: Date.now(), status: b.status });
      setTimeout(() => res.writeHead(b.status).end(b.status >= 300 ? "receiver says no" : "ok"), b.delayMs ?? 0);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: (path) => `http://127.0.0.1:${port}${path}`,
    received,
    on: (path, behaviour) => void behaviours.set(path, behaviour),
    at: (path) => received.filter((r) => r.path === path),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export interface NotifyStack {
  api: TestApi<CatalogTables & NotifyTables>;
  db: NotifyDb;
  nats: NatsClient;
  events: EventStreamConfig;
  /** The dispatcher's settings, for starting another one. */
  config: DispatcherConfig;
  relay: OutboxRelay;
  dispatcher: WebhookDispatcher;
  receiver: Receiver;
  close(): Promise<void>;
}

/** startNotifyStack starts everything for one test file; dispatcher settings override fast test defaults. */
export async function startNotifyStack(name: string, overrides: Partial<DispatcherConfig> = {}): Promise<NotifyStack> {
  const config: DispatcherConfig = {
    ...DEFAULT_DISPATCHER,
    pollMs: 50,
    requestTimeoutMs: 8_000,
    retryMinMs: 20,
    retryMaxMs: 200,
    ...overrides,
  };
  const notify = { allowPrivateTargets: true, dispatcher: config };
  const api = await startTestApi<CatalogTables & NotifyTables>(name, (db) => [catalogModule(db), notifyModule(db, notify)]);
  const log = createLogger(`test-${name}`, (process.env["TEST_LOG_LEVEL"] ?? "silent") as "silent");
  const nats = await connectNats({ servers: process.env["NATS_URL"] ?? "127.0.0.1:4222", name: `test-${name}` });
  const tag = `${name}_${randomBytes(4).toString("hex")}`;
  // A short duplicate window, so a test can publish an event id again and see the consumer get it twice.
  const events: EventStreamConfig = {
    ...DEFAULT_EVENT_STREAM,
    stream: `T_${tag.toUpperCase()}`,
    subjectPrefix: `t_${tag}`,
    duplicateWindowMs: 1_000,
    maxAgeMs: 600_000,
  };
  const db = api.api.db;
  const relay = await startOutboxRelay({ db: api.api.db, nats, events, config: { ...DEFAULT_RELAY, pollMs: 10, pruneEveryMs: 0 }, log });
  const dispatcher = await startWebhookDispatcher({ db, nats, events, config, allowPrivateTargets: true, log });
  const receiver = await startReceiver();
  return {
    api,
    db,
    nats,
    events,
    config,
    relay,
    dispatcher,
    receiver,
    async close() {
      await dispatcher.stop();
      await relay.stop();
      await receiver.close();
      await nats.jsm.streams.delete(events.stream).catch(() => {});
      await nats.close();
      await api.close();
    },
  };
}

/** payloadOf parses a received webhook body. */
export function payloadOf(r: Received): { id: string; type: string; merchantId: string; occurTime: string; data: any } {
  return JSON.parse(r.body);
}
