/**
 * Where the VStream relay keeps how far it has published: one JetStream
 * message per (event stream, keyspace) on the subject
 * `relay_positions.<event stream>.<keyspace>` of a small stream that keeps
 * the last message per subject (a key-value store, as NATS KV builds it).
 * The message holds each shard's GTID position, written after everything
 * before it was acknowledged by the event stream.
 *
 * Why NATS and not a table in the keyspace: every table of the sharded
 * `stockroom` keyspace needs a vindex that places its rows, and a
 * per-shard position row has no merchant to hash (it would need a
 * keyspace-id column under a `binary` vindex, or an unsharded keyspace);
 * NATS is already what the relay cannot work without, so the store adds no
 * failure mode; and each write is compare-and-set on the subject's last
 * sequence, so a deposed leader that is still streaming cannot move the
 * position back or past what the new leader published: its write fails and
 * it stops.
 *
 * One message for all shards rather than one per shard: positions of the
 * shards move together in one atomic write, and after a reshard the old
 * shards' positions disappear with the write that adds the new ones.
 */
import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import { DiscardPolicy, JetStreamApiError, RetentionPolicy, StorageType } from "@nats-io/jetstream";
import type { ShardPosition } from "./vstream.ts";

export const DEFAULT_POSITIONS_STREAM = "STOCKROOM_RELAY_POSITIONS";
const SUBJECT_ROOT = "relay_positions";

export interface StoredPositions {
  shards: ShardPosition[];
  /** When they were written (ms since the epoch). */
  savedAt: number;
}

export interface PositionStore {
  /** The stored positions, or undefined when this relay has never saved any. */
  load(): Promise<StoredPositions | undefined>;
  /** save writes positions if nothing else wrote since this store's last load or save; otherwise it throws PositionConflict. */
  save(shards: ShardPosition[]): Promise<void>;
}

/** PositionConflict: another relay wrote the positions since this one read them (it was deposed). */
export class PositionConflict extends Error {}

/** openPositionStore makes sure the positions stream exists and returns the store of one event stream's keyspace. */
export async function openPositionStore(
  nats: { js: JetStreamClient; jsm: JetStreamManager },
  options: { stream: string; replicas: number; eventStream: string; keyspace: string },
): Promise<PositionStore> {
  const config = {
    subjects: [`${SUBJECT_ROOT}.>`],
    max_msgs_per_subject: 1,
    discard: DiscardPolicy.Old,
    num_replicas: options.replicas,
  };
  try {
    await nats.jsm.streams.add({ name: options.stream, retention: RetentionPolicy.Limits, storage: StorageType.File, ...config });
  } catch (error) {
    if (!(error instanceof JetStreamApiError) || error.code !== 10058) throw error; // 10058: the name is in use
  }
  const subject = `${SUBJECT_ROOT}.${options.eventStream}.${options.keyspace}`;
  let lastSeq = 0;
  return {
    async load() {
      try {
        const m = await nats.jsm.streams.getMessage(options.stream, { last_by_subj: subject });
        if (!m) {
          lastSeq = 0;
          return undefined;
        }
        lastSeq = m.seq;
        return m.json<StoredPositions>();
      } catch (error) {
        if (error instanceof JetStreamApiError && error.code === 10037) {
          lastSeq = 0; // no message
          return undefined;
        }
        throw error;
      }
    },
    async save(shards) {
      const body: StoredPositions = { shards, savedAt: Date.now() };
      try {
        const ack = await nats.js.publish(subject, JSON.stringify(body), { expect: { lastSubjectSequence: lastSeq } });
        lastSeq = ack.seq;
      } catch (error) {
        // 10071: wrong last sequence.
        if (error instanceof JetStreamApiError && error.code === 10071) {
          throw new PositionConflict(`relay positions ${subject} were written by another relay`, { cause: error });
        }
        throw error;
      }
    },
  };
}
