import { readInt, type Env } from "@stockroom/common";
import { DEFAULT_EVENT_STREAM, type EventStreamConfig } from "./event-stream.ts";
import { DEFAULT_RELAY, type RelayConfig } from "./relay.ts";

/** parseEventStreamConfig reads where events are published (the relay) and read (consumers such as search). */
export function parseEventStreamConfig(env: Env): EventStreamConfig {
  const subjectPrefix = env["EVENTS_SUBJECT_PREFIX"] ?? DEFAULT_EVENT_STREAM.subjectPrefix;
  if (!/^[A-Za-z0-9_-]*$/.test(subjectPrefix)) {
    throw new Error(`EVENTS_SUBJECT_PREFIX must be one subject token ([A-Za-z0-9_-]*), not "${subjectPrefix}"`);
  }
  return {
    stream: env["EVENTS_STREAM"] ?? DEFAULT_EVENT_STREAM.stream,
    subjectPrefix,
    duplicateWindowMs: readInt(env, "EVENTS_DUPLICATE_WINDOW_MS", DEFAULT_EVENT_STREAM.duplicateWindowMs, 1_000, 86_400_000),
    maxAgeMs: readInt(env, "EVENTS_MAX_AGE_MS", DEFAULT_EVENT_STREAM.maxAgeMs, 60_000, 365 * 86_400_000),
    replicas: readInt(env, "EVENTS_REPLICAS", DEFAULT_EVENT_STREAM.replicas, 1, 5),
  };
}

/** parseRelayConfig reads the outbox relay's settings. */
export function parseRelayConfig(env: Env): RelayConfig {
  const source = env["RELAY_SOURCE"] ?? DEFAULT_RELAY.source;
  if (source !== "poll" && source !== "vstream") throw new Error(`RELAY_SOURCE must be "poll" or "vstream", not "${source}"`);
  const vtgateGrpcAddr = env["VTGATE_GRPC_ADDR"] ?? DEFAULT_RELAY.vtgateGrpcAddr;
  if (source === "vstream" && vtgateGrpcAddr === "")
    throw new Error("RELAY_SOURCE=vstream needs VTGATE_GRPC_ADDR (vtgate's gRPC host:port)");
  return {
    ...DEFAULT_RELAY,
    batchSize: readInt(env, "RELAY_BATCH_SIZE", DEFAULT_RELAY.batchSize, 1, 10_000),
    pollMs: readInt(env, "RELAY_POLL_MS", DEFAULT_RELAY.pollMs, 1, 60_000),
    retentionMs: readInt(env, "RELAY_RETENTION_MS", DEFAULT_RELAY.retentionMs, 60_000, 365 * 86_400_000),
    pruneEveryMs: readInt(env, "RELAY_PRUNE_EVERY_MS", DEFAULT_RELAY.pruneEveryMs, 0, 86_400_000),
    source,
    vtgateGrpcAddr,
    positionsStream: env["RELAY_POSITIONS_STREAM"] ?? DEFAULT_RELAY.positionsStream,
  };
}
