/** The bulk package's own events, written to the outbox in the transaction of the change they announce. */
import { create, toBinary } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { BulkJobEventSchema, BulkJobEventType } from "@stockroom/sdk/gen/stockroom/bulk/v1/bulk_job_pb.js";
import { appendOutbox } from "@stockroom/events";
import { newUlid } from "@stockroom/common";
import { jobToProto } from "./convert.ts";
import type { BulkJobRow, BulkTx } from "./store.ts";

/**
 * recordJobFinished writes the "bulk_job.finished" event (a
 * stockroom.bulk.v1.BulkJobEvent) of a job that has just reached a final
 * state (succeeded, partially succeeded, failed, cancelled, rolled back),
 * with the job as it is after that change, in the transaction that moved it
 * there: the relay publishes it on bulk_jobs.<merchant>.bulk_job.finished
 * exactly when the state commits, and the webhook dispatcher sends it to
 * endpoints subscribed to "bulk_job.finished", "bulk_job.*" or "*".
 */
export async function recordJobFinished(trx: BulkTx, row: BulkJobRow, at: Date): Promise<void> {
  const eventId = newUlid(at.getTime());
  const job = jobToProto(row);
  await appendOutbox(trx, [
    {
      merchantId: row.merchant_id,
      eventId,
      aggregateType: "bulk_job",
      aggregateId: row.job_id,
      aggregateVersion: Number(row.version),
      eventType: "bulk_job.finished",
      payload: toBinary(
        BulkJobEventSchema,
        create(BulkJobEventSchema, {
          eventId,
          merchantId: row.merchant_id,
          type: BulkJobEventType.FINISHED,
          job,
          occurTime: timestampFromDate(at),
        }),
      ),
      createdAt: at,
    },
  ]);
}
