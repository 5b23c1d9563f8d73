/**
 * vtgate's VStream API, as the outbox relay's VStream source uses it: one
 * gRPC stream (HTTP/2 cleartext) over every shard of a keyspace, filtered to
 * outbox_events, whose committed inserts become OutboxRows. The generated
 * code in gen/vitess comes from Vitess's own protos (tools/vitess/generate.sh).
 *
 * What vtgate sends per shard, in commit order: BEGIN, FIELD (a table's
 * columns, before its first ROW and again after a schema change), ROW
 * (row changes: before and/or after images), VGTID (the whole stream's
 * position once this transaction is included), COMMIT; plus HEARTBEATs and
 * OTHER/DDL events. Transactions of other tables come as empty BEGIN/COMMIT
 * pairs, so the position still moves on an idle outbox.
 */
import { create } from "@bufbuild/protobuf";
import { createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { type VEvent, VEventType } from "./gen/vitess/binlogdata_pb.js";
import { type Field, type Row, Type } from "./gen/vitess/query_pb.js";
import { TabletType } from "./gen/vitess/topodata_pb.js";
import { VStreamRequestSchema } from "./gen/vitess/vtgate_pb.js";
import { Vitess } from "./gen/vitess/vtgateservice_pb.js";
import type { OutboxRow } from "./relay-batch.ts";

export { VEventType, type VEvent };

/** One shard's position: a GTID set such as "MariaDB/0-1-44" or "MySQL56/<uuid>:1-90", or "current" (now). */
export interface ShardPosition {
  keyspace: string;
  shard: string;
  gtid: string;
}

export type VitessClient = Client<typeof Vitess>;

/** vtgateClient connects to vtgate's gRPC port (vttestserver: its port + 1; production: vtgate's --grpc-port). */
export function vtgateClient(address: string): VitessClient {
  const baseUrl = /^https?:\/\//.test(address) ? address : `http://${address}`;
  return createClient(Vitess, createGrpcTransport({ baseUrl, idleConnectionTimeoutMs: 60_000 }));
}

/** The columns the relay needs; published_at is left out (it only ever changes after the insert). */
const OUTBOX_COLUMNS = [
  "merchant_id",
  "event_id",
  "aggregate_type",
  "aggregate_id",
  "aggregate_version",
  "event_type",
  "payload",
  "trace_context",
  "created_at",
  "event_count",
] as const;

/**
 * streamOutbox opens a VStream of outbox_events from the primaries of the
 * given shard positions. The Rule's filter must be a SELECT (a bare table
 * name is a regexp-less match whose empty filter the tablet refuses with
 * "Query was empty"). vtgate follows a reshard of the keyspace itself
 * (journal events), since every shard of the keyspace is in one stream.
 */
export function streamOutbox(client: VitessClient, positions: ShardPosition[], signal: AbortSignal): AsyncIterable<{ events: VEvent[] }> {
  const request = create(VStreamRequestSchema, {
    tabletType: TabletType.PRIMARY,
    vgtid: { shardGtids: positions.map((p) => ({ keyspace: p.keyspace, shard: p.shard, gtid: p.gtid })) },
    filter: { rules: [{ match: "outbox_events", filter: `select ${OUTBOX_COLUMNS.join(", ")} from outbox_events` }] },
    // Heartbeats every second keep an idle stream's liveness visible; no skew minimisation (it holds shards back).
    flags: { heartbeatInterval: 1, minimizeSkew: false },
  });
  return client.vStream(request, { signal });
}

const BINARY_CHARSET = 63;
/** Vitess type flags (query.proto): integral types carry 0x100. */
const INTEGRAL = 0x100;

/** decodeValue turns one column's bytes (MySQL text protocol form) into what mysql2 would return for it. */
function decodeValue(field: Field, bytes: Uint8Array): unknown {
  if ((field.type & INTEGRAL) !== 0) return Number(Buffer.from(bytes).toString("latin1"));
  if (field.type === Type.DATETIME || field.type === Type.TIMESTAMP) {
    // The pool reads DATETIME as UTC (timezone "Z"); the binlog text form is "YYYY-MM-DD HH:MM:SS[.fff]".
    return new Date(`${Buffer.from(bytes).toString("latin1").replace(" ", "T")}Z`);
  }
  if (field.charset === BINARY_CHARSET) return Buffer.from(bytes);
  return Buffer.from(bytes).toString("utf8");
}

/** decodeRow maps a ROW image to column name → value with the fields of the table's last FIELD event; NULL is null. */
export function decodeRow(fields: readonly Field[], row: Row): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  let offset = 0;
  for (const [i, field] of fields.entries()) {
    const length = Number(row.lengths[i] ?? -1n);
    if (length < 0) {
      out[field.name] = null;
      continue;
    }
    out[field.name] = decodeValue(field, row.values.subarray(offset, offset + length));
    offset += length;
  }
  return out;
}

/** toOutboxRow checks a decoded outbox_events image has the relay's columns. */
export function toOutboxRow(values: Record<string, unknown>): OutboxRow {
  for (const column of OUTBOX_COLUMNS) {
    if (!(column in values)) throw new Error(`VStream row of outbox_events lacks column ${column}`);
  }
  return values as unknown as OutboxRow;
}
