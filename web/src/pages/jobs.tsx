/** The jobs page: drop a file to start a job, follow uploads and jobs live, open one. */
import { BulkJobState, type BulkJob } from "@stockroom/sdk/web";
import { useQuery } from "@tanstack/react-query";
import { useEffect, useState, useSyncExternalStore, type DragEvent } from "react";
import { describeError } from "../errors.ts";
import { bytes, count, time } from "../format.ts";
import { JobProgress, JobState, useLiveJob } from "../jobs-shared.tsx";
import { href } from "../router.ts";
import { client } from "../session.ts";
import { dismissUpload, retryUpload, startUpload, subscribeUploads, uploadsSnapshot, type UploadState } from "../uploads.ts";
import { Empty, ErrorBox, InlineError, Loading, Pager, Progress, usePages } from "../ui.tsx";

const FILTERS: [string, BulkJobState][] = [
  ["All", BulkJobState.UNSPECIFIED],
  ["Running", BulkJobState.RUNNING],
  ["Queued", BulkJobState.QUEUED],
  ["Succeeded", BulkJobState.SUCCEEDED],
  ["Partially succeeded", BulkJobState.PARTIALLY_SUCCEEDED],
  ["Failed", BulkJobState.FAILED],
  ["Rolled back", BulkJobState.ROLLED_BACK],
];

/** jobsQuery is the job list's query; main.tsx starts the first page's before React renders. */
export function jobsQuery(state: BulkJobState, token: string) {
  return {
    queryKey: ["jobs", state, token],
    queryFn: ({ signal }: { signal: AbortSignal }) => client.bulk.listBulkJobs({ pageSize: 20, pageToken: token, state }, { signal }),
  };
}

export function JobsPage() {
  const [state, setState] = useState(BulkJobState.UNSPECIFIED);
  const pages = usePages();
  const jobs = useQuery(jobsQuery(state, pages.token));
  const shown = !jobs.isPending;
  useEffect(() => {
    // The first-load budget (≤ 1 s from navigation to the list) is measured to this mark.
    if (shown && performance.getEntriesByName("jobs-list-shown").length === 0) performance.mark("jobs-list-shown");
  }, [shown]);
  return (
    <>
      <h1>Bulk jobs</h1>
      <UploadArea />
      <section aria-labelledby="jobs-heading">
        <div className="toolbar">
          <h2 id="jobs-heading">Jobs</h2>
          <label>
            Show{" "}
            <select
              value={state}
              onChange={(e) => {
                setState(Number(e.target.value));
                pages.reset();
              }}
            >
              {FILTERS.map(([label, s]) => (
                <option key={s} value={s}>
                  {label}
                </option>
              ))}
            </select>
          </label>
        </div>
        {jobs.isPending ? (
          <Loading what="jobs" />
        ) : jobs.isError ? (
          <ErrorBox error={jobs.error} retry={() => jobs.refetch()} />
        ) : jobs.data.jobs.length === 0 ? (
          <Empty>{state ? "No job in this state." : "No bulk job yet. Drop a CSV or JSON Lines file above to start one."}</Empty>
        ) : (
          <ul className="cards" aria-label="Bulk jobs">
            {jobs.data.jobs.map((j) => (
              <JobRow key={j.id} initial={j} />
            ))}
          </ul>
        )}
        <Pager
          hasPrev={pages.hasPrev}
          hasNext={!!jobs.data?.nextPageToken}
          prev={pages.prev}
          next={() => pages.next(jobs.data!.nextPageToken)}
        />
      </section>
    </>
  );
}

function JobRow({ initial }: { initial: BulkJob }) {
  const { job = initial, progress } = useLiveJob(initial);
  const c = job.counts;
  return (
    <li className="card job-row" data-job-id={job.id}>
      <div className="row-head">
        <a href={href("jobs", job.id)} className="title">
          {job.options?.fileName || job.id}
        </a>
        <JobState job={job} />
        {job.options?.dryRun && <span className="badge badge-plain">dry run</span>}
      </div>
      <JobProgress job={job} progress={progress} />
      <p className="muted small">
        {count(c?.total ?? 0n)} items · {count(c?.invalid ?? 0n)} invalid · started {time(job.createTime)}
      </p>
    </li>
  );
}

function UploadArea() {
  const uploads = useSyncExternalStore(subscribeUploads, uploadsSnapshot);
  const [dryRun, setDryRun] = useState(false);
  const [skipConflicts, setSkipConflicts] = useState(false);
  const [over, setOver] = useState(false);
  const [error, setError] = useState<unknown>();
  const begin = (files: FileList | null | undefined) => {
    setError(undefined);
    for (const file of Array.from(files ?? [])) startUpload(file, { dryRun, skipConflicts }).catch(setError);
  };
  const onDrop = (e: DragEvent) => {
    e.preventDefault();
    setOver(false);
    begin(e.dataTransfer.files);
  };
  return (
    <section aria-labelledby="upload-heading">
      <h2 id="upload-heading">New job</h2>
      {/* biome-ignore lint/a11y/noStaticElementInteractions: the drop target; the file input inside is the keyboard path */}
      <div
        className={`dropzone${over ? " over" : ""}`}
        data-testid="dropzone"
        onDragOver={(e) => {
          e.preventDefault();
          setOver(true);
        }}
        onDragLeave={() => setOver(false)}
        onDrop={onDrop}
      >
        <p>Drop a CSV or JSON Lines file here, or</p>
        <label className="button">
          choose a file
          <input
            type="file"
            className="visually-hidden"
            accept=".csv,.jsonl,.ndjson,text/csv"
            onChange={(e) => {
              begin(e.target.files);
              e.target.value = "";
            }}
          />
        </label>
        <div className="options">
          <label>
            <input type="checkbox" checked={dryRun} onChange={(e) => setDryRun(e.target.checked)} /> Dry run (validate and report, change
            nothing)
          </label>
          <label>
            <input type="checkbox" checked={skipConflicts} onChange={(e) => setSkipConflicts(e.target.checked)} /> Skip products changed
            after the upload (report them as conflicts)
          </label>
        </div>
      </div>
      <InlineError error={error} />
      {uploads.length > 0 && (
        <ul className="cards" aria-label="Uploads">
          {uploads.map((u) => (
            <UploadRow key={u.requestId} upload={u} />
          ))}
        </ul>
      )}
    </section>
  );
}

function UploadRow({ upload: u }: { upload: UploadState }) {
  const text =
    u.status === "sending"
      ? `${bytes(u.committed)} of ${bytes(u.size)}${u.resumed ? " · resumed" : ""}`
      : u.status === "staging"
        ? "Uploaded; validating…"
        : u.status === "done"
          ? "Uploaded"
          : "Stopped";
  return (
    <li className="card upload-row" data-upload={u.status}>
      <div className="row-head">
        <span className="title">{u.name}</span>
        {u.dryRun && <span className="badge badge-plain">dry run</span>}
      </div>
      <Progress label={`Upload of ${u.name}`} value={u.committed} max={u.size} text={text} />
      {u.status === "failed" && (
        <div className="error" role="alert">
          <p>{describeError(u.error)}</p>
          <button type="button" onClick={() => retryUpload(u.requestId)}>
            Resume
          </button>{" "}
          <button type="button" onClick={() => dismissUpload(u.requestId)}>
            Dismiss
          </button>
        </div>
      )}
      {u.status === "done" && u.jobId && (
        <p>
          <a href={href("jobs", u.jobId)}>Open the job</a>{" "}
          <button type="button" className="link" onClick={() => dismissUpload(u.requestId)}>
            Dismiss
          </button>
        </p>
      )}
    </li>
  );
}
