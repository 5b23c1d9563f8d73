/** One bulk job: its counts, live progress, per-item outcomes with line numbers, the report, cancel and rollback. */
import { BulkItemOutcome, BulkJobState, ConflictPolicy, isFinalState, type BulkJob } from "@stockroom/sdk/web";
import { useQuery, useQueryClient } from "@tanstack/react-query";
import { useState } from "react";
import { bytes, count, time, words } from "../format.ts";
import { JobProgress, JobState, useLiveJob } from "../jobs-shared.tsx";
import { href } from "../router.ts";
import { client } from "../session.ts";
import { ActionButton, Empty, ErrorBox, Loading, Pager, usePages } from "../ui.tsx";

export function JobPage({ id }: { id: string }) {
  const query = useQuery({
    queryKey: ["jobs", "one", id],
    queryFn: ({ signal }) => client.bulk.getBulkJob({ jobId: id }, { signal }).then((r) => r.job!),
  });
  const { job, progress } = useLiveJob(query.data);
  return (
    <>
      <p>
        <a href={href("jobs")}>← All jobs</a>
      </p>
      {query.isPending ? (
        <Loading what="the job" />
      ) : query.isError || !job ? (
        <ErrorBox error={query.error} retry={() => query.refetch()} />
      ) : (
        <JobView job={job} progress={progress} refresh={() => query.refetch()} />
      )}
    </>
  );
}

function JobView({
  job,
  progress,
  refresh,
}: {
  job: BulkJob;
  progress: Parameters<typeof JobProgress>[0]["progress"];
  refresh: () => void;
}) {
  const c = job.counts;
  const final = isFinalState(job.state);
  const rows: [string, bigint | undefined][] = [
    ["Items", c?.total],
    ["Valid", c?.valid],
    ["Invalid", c?.invalid],
    ["Applied", c?.applied],
    ["Unchanged", c?.unchanged],
    ["Conflicts", c?.conflict],
    ["Failed", c?.failed],
    ["Rolled back", c?.rolledBack],
  ];
  return (
    <>
      <h1 className="title-line">
        {job.options?.fileName || "Bulk job"} <JobState job={job} />
        {job.options?.dryRun && <span className="badge badge-plain">dry run</span>}
      </h1>
      <p className="muted small">
        Job {job.id} · {bytes(Number(job.fileSize))} · started {time(job.createTime)}
        {job.createdBy && ` by ${job.createdBy}`}
        {job.endTime && ` · ended ${time(job.endTime)}`} · conflicts:{" "}
        {job.options?.conflictPolicy === ConflictPolicy.SKIP ? "skip changed products" : "overwrite"}
        {job.rollbackRequestedBy && ` · rollback asked for by ${job.rollbackRequestedBy}`}
      </p>
      {job.error && (
        <div className="error" role="alert">
          <p>The file was refused as a whole: {job.error}</p>
        </div>
      )}
      <JobProgress job={job} progress={progress} />
      <dl className="counts" aria-label="Counts">
        {rows.map(([label, n]) => (
          <div key={label}>
            <dt>{label}</dt>
            <dd>{count(n ?? 0n)}</dd>
          </div>
        ))}
      </dl>
      <div className="actions">
        <ReportButton job={job} />
        {!final && (
          <ActionButton
            className="danger"
            confirm="Cancel this job? Items not applied yet will not be."
            action={async () => {
              await client.bulk.cancelBulkJob({ jobId: job.id });
              refresh();
            }}
          >
            Cancel job
          </ActionButton>
        )}
      </div>
      {final && !job.options?.dryRun && job.state !== BulkJobState.ROLLED_BACK && job.state !== BulkJobState.FAILED && (
        <Rollback job={job} refresh={refresh} />
      )}
      <Items job={job} />
    </>
  );
}

function ReportButton({ job }: { job: BulkJob }) {
  return (
    <ActionButton
      action={async () => {
        const blob = await new Response(client.downloadBulkJobReport(job.id).readableStream()).blob();
        const url = URL.createObjectURL(new Blob([blob], { type: "text/csv" }));
        const a = document.createElement("a");
        a.href = url;
        a.download = `${(job.options?.fileName || job.id).replace(/\.[^.]*$/, "")}.report.csv`;
        document.body.append(a);
        a.click();
        a.remove();
        setTimeout(() => URL.revokeObjectURL(url), 10_000);
      }}
    >
      Download report (CSV)
    </ActionButton>
  );
}

function Rollback({ job, refresh }: { job: BulkJob; refresh: () => void }) {
  const [overwrite, setOverwrite] = useState(false);
  const queryClient = useQueryClient();
  return (
    <section className="card" aria-labelledby="rollback-heading">
      <h2 id="rollback-heading">Roll back</h2>
      <p>Restore every product this job changed to the values it had before.</p>
      <fieldset>
        <legend>Products changed since the job</legend>
        <label>
          <input type="radio" name="rollback-policy" checked={!overwrite} onChange={() => setOverwrite(false)} /> Leave them as they are and
          report them as conflicts (safe)
        </label>
        <label>
          <input type="radio" name="rollback-policy" checked={overwrite} onChange={() => setOverwrite(true)} /> Restore them anyway
          (overwrites later changes)
        </label>
      </fieldset>
      <ActionButton
        className="danger"
        confirm={`Roll back ${count(job.counts?.applied ?? 0n)} applied items?`}
        action={async () => {
          await client.bulk.rollbackBulkJob({ jobId: job.id, conflictPolicy: overwrite ? ConflictPolicy.OVERWRITE : ConflictPolicy.SKIP });
          await queryClient.invalidateQueries({ queryKey: ["jobs"] });
          refresh();
        }}
      >
        Roll back job
      </ActionButton>
    </section>
  );
}

const OUTCOMES: [string, BulkItemOutcome | undefined][] = [
  ["Problems (invalid)", BulkItemOutcome.INVALID],
  ["Conflicts", BulkItemOutcome.CONFLICT],
  ["Failed", BulkItemOutcome.FAILED],
  ["Applied", BulkItemOutcome.APPLIED],
  ["Unchanged", BulkItemOutcome.UNCHANGED],
  ["Rolled back", BulkItemOutcome.ROLLED_BACK],
  ["All items", undefined],
];

function Items({ job }: { job: BulkJob }) {
  const [outcome, setOutcome] = useState<BulkItemOutcome | undefined>(BulkItemOutcome.INVALID);
  const pages = usePages();
  const items = useQuery({
    queryKey: ["jobs", "items", job.id, job.state, outcome, pages.token],
    queryFn: ({ signal }) =>
      client.bulk.listBulkJobItems(
        { jobId: job.id, pageSize: 50, pageToken: pages.token, outcomes: outcome === undefined ? [] : [outcome] },
        { signal },
      ),
    placeholderData: (prev) => prev,
  });
  return (
    <section aria-labelledby="items-heading">
      <div className="toolbar">
        <h2 id="items-heading">Items</h2>
        <label>
          Show{" "}
          <select
            value={outcome ?? ""}
            onChange={(e) => {
              setOutcome(e.target.value === "" ? undefined : (Number(e.target.value) as BulkItemOutcome));
              pages.reset();
            }}
          >
            {OUTCOMES.map(([label, o]) => (
              <option key={label} value={o ?? ""}>
                {label}
              </option>
            ))}
          </select>
        </label>
      </div>
      {items.isPending ? (
        <Loading what="items" />
      ) : items.isError ? (
        <ErrorBox error={items.error} retry={() => items.refetch()} />
      ) : items.data.items.length === 0 ? (
        <Empty>No item with this outcome.</Empty>
      ) : (
        <div className="table-wrap">
          <table className="items">
            <thead>
              <tr>
                <th scope="col">Line</th>
                <th scope="col">SKU</th>
                <th scope="col">Outcome</th>
                <th scope="col">Problem</th>
              </tr>
            </thead>
            <tbody>
              {items.data.items.map((item) => (
                <tr key={item.lineNumber.toString()} data-line={item.lineNumber.toString()}>
                  <td>{item.lineNumber.toString()}</td>
                  <td>{item.sku || <span className="muted">(none)</span>}</td>
                  <td>{words(BulkItemOutcome[item.outcome])}</td>
                  <td>
                    {item.errors.length === 0
                      ? "—"
                      : item.errors.map((e) => (
                          <div key={`${e.field}:${e.code}`}>
                            {e.field && <strong>{e.field}: </strong>}
                            {e.message} <span className="muted small">({e.code})</span>
                          </div>
                        ))}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <Pager
        hasPrev={pages.hasPrev}
        hasNext={!!items.data?.nextPageToken}
        prev={pages.prev}
        next={() => pages.next(items.data!.nextPageToken)}
      />
    </section>
  );
}
