/**
 * Telling an outage from a fault: a database or NATS that cannot be reached
 * right now (refused, lost, shutting down, full, failing over) is a
 * transient condition that retrying with backoff outlives. The RPC layer
 * answers it UNAVAILABLE (rpc-errors.ts); background tasks log it once per
 * outage instead of once per run (task-failures.ts).
 */
/** Socket and mysql2 protocol codes of a connection that could not be made or was lost. */
const CONNECTION_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "EPIPE",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
  "PROTOCOL_CONNECTION_LOST",
  "PROTOCOL_ENQUEUE_AFTER_FATAL_ERROR",
]);

/** What mysql2 throws for a statement on a connection that has closed (it is fatal, with no code). */
const CLOSED_STATE = "Can't add new command when connection is in closed state";

/**
 * MySQL server errors that say "not now": too many connections (1040, 1203),
 * shutting down (1053), read-only during a failover (1290), connection
 * killed (MariaDB's 1927).
 */
const SERVER_UNAVAILABLE = new Set([1040, 1053, 1203, 1290, 1927]);

/** vtgate's texts (errno 1105) for a shard that has no tablet to serve it right now. */
const VTGATE_UNAVAILABLE = /no healthy tablet|code = (Unavailable|Code\(17\)|Code\(18\))/;

/** NATS client errors of a connection that is down, closing, or a request nobody answered in time. */
const NATS_UNAVAILABLE = new Set([
  "ClosedConnectionError",
  "ConnectionError",
  "DrainingConnectionError",
  "NoRespondersError",
  "TimeoutError",
]);

/**
 * unavailableBackend names the backend a transient infrastructure error
 * came from: "database" for mysql2's (its errors carry `sqlMessage` or a
 * socket code, and `errno`), "message broker" for the NATS client's (told by
 * class name, so the RPC layer loads no driver), undefined for anything else.
 */
export function unavailableBackend(error: unknown): "database" | "message broker" | undefined {
  if (!(error instanceof Error) || error instanceof DOMException) return undefined;
  const { code, errno, fatal, sqlMessage } = error as Error & { code?: unknown; errno?: unknown; fatal?: unknown; sqlMessage?: unknown };
  if (typeof code === "string" && CONNECTION_CODES.has(code)) return "database";
  // mysql2's answer to a statement on a connection already closed (killed while idle, the server restarted): no code.
  if (fatal === true && code === undefined && error.message.startsWith(CLOSED_STATE)) return "database";
  if (typeof errno === "number" && typeof sqlMessage === "string") {
    if (SERVER_UNAVAILABLE.has(errno)) return "database";
    // vtgate answers a shard with no serving tablet (a reparent, a restart) as 1105 with the vtrpc code in the text:
    // UNAVAILABLE, CLUSTER_EVENT (17: "operation not allowed in state SHUTTING_DOWN") or READ_ONLY (18).
    if (errno === 1105 && VTGATE_UNAVAILABLE.test(sqlMessage)) return "database";
    if (fatal === true) return "database";
  }
  if (NATS_UNAVAILABLE.has(error.constructor.name)) return "message broker";
  // A pull the server ended as it went down (status 409, "Server Shutdown"), or one the client gave up on when the
  // server's heartbeats stopped (it went away without a word).
  if (error.name.startsWith("JetStream") && /^(server shutdown|heartbeats missed)$/i.test(error.message)) return "message broker";
  return undefined;
}
