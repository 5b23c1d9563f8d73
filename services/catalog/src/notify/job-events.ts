import { create, toBinary } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { Transaction } from "kysely";
import { BulkJobEventSchema, BulkJobEventType, type BulkJob } from "@stockroom/sdk/gen/stockroom/bulk/v1/bulk_job_pb.js";
import { appendOutbox, type EventTables } from "@stockroom/events";
import { newUlid } from "@stockroom/common/ulid.ts";

/**
 * appendJobFinishedEvent writes a "bulk_job.finished" event (a
 * stockroom.bulk.v1.BulkJobEvent) to the outbox in the caller's
 * transaction: call it in the transaction that moves a job to a final
 * state, with the job as it is after that change (final state, counts,
 * version). The relay publishes it on bulk_jobs.<merchant>.bulk_job.finished
 * and the webhook dispatcher sends it to endpoints subscribed to
 * "bulk_job.finished", "bulk_job.*" or "*".
 */
export async function appendJobFinishedEvent(
  trx: Transaction<EventTables>,
  merchantId: string,
  job: BulkJob,
  at: Date = new Date(),
): Promise<void> {
  const eventId = newUlid(at.getTime());
  await appendOutbox(trx, [
    {
      merchantId,
      eventId,
      aggregateType: "bulk_job",
      aggregateId: job.id,
      aggregateVersion: Number(job.version),
      eventType: "bulk_job.finished",
      payload: toBinary(
        BulkJobEventSchema,
        create(BulkJobEventSchema, { eventId, merchantId, type: BulkJobEventType.FINISHED, job, occurTime: timestampFromDate(at) }),
      ),
      createdAt: at,
    },
  ]);
}
