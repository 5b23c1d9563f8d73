/**
 * @stockroom/events: the transactional outbox (appendOutbox writes events in
 * the change's transaction), the event stream contract between the relay and
 * its consumers (subjects, domains, headers), the outbox relay that publishes
 * committed rows (its process is relay-main.ts), their config parsers,
 * migrations and metrics.
 */
export { parseEventStreamConfig, parseRelayConfig } from "./config.ts";
export {
  DEFAULT_EVENT_STREAM,
  domainSubjects,
  ensureEventConsumer,
  ensureEvents,
  EVENT_DOMAINS,
  EVENT_HEADERS,
  eventSubject,
  type EventStreamConfig,
  PRODUCT_EVENT_BATCH,
} from "./event-stream.ts";
export {
  registerOutboxMetrics,
  registerRelayMetrics,
  OUTBOX_COUNT_CAP,
  RELAY_LATENCY_BUCKETS,
  type RelayLike,
  type RelayStatsLike,
} from "./metrics.ts";
export { eventsMigrations } from "./migrations.ts";
export { appendOutbox, type OutboxEvent } from "./outbox.ts";
export { DEFAULT_RELAY, startOutboxRelay, type OutboxRelay, type RelayConfig, type RelayDeps, type RelayStats } from "./relay.ts";
export { startRelay, startVStreamRelay, type VStreamRelayDeps } from "./relay-vstream.ts";
export { DEFAULT_POSITIONS_STREAM, openPositionStore, type PositionStore, type StoredPositions } from "./relay-positions.ts";
export type { EventTables } from "./schema.ts";
