/** What the job list and the job page share: live updates and how a job's progress reads. */
import { BulkJobState, isFinalState, type BulkJob, type BulkJobProgress } from "@stockroom/sdk/web";
import { useQueryClient } from "@tanstack/react-query";
import { useEffect, useState } from "react";
import { count, duration, words } from "./format.ts";
import { client } from "./session.ts";
import { Badge, Progress } from "./ui.tsx";

/**
 * useLiveJob follows a job with WatchBulkJob (the SDK reconnects after network errors) while it is
 * not final, starting from the copy the page already has; the final state also refreshes the lists.
 */
export function useLiveJob(initial: BulkJob | undefined): { job: BulkJob | undefined; progress: BulkJobProgress | undefined } {
  const [live, setLive] = useState<{ job: BulkJob; progress: BulkJobProgress | undefined }>();
  const queryClient = useQueryClient();
  const id = initial?.id;
  const watching = initial !== undefined && !isFinalState(initial.state);
  useEffect(() => {
    if (!id || !watching) return;
    const abort = new AbortController();
    (async () => {
      for await (const update of client.watchBulkJob(id, { signal: abort.signal })) {
        setLive(update);
        if (isFinalState(update.job.state)) void queryClient.invalidateQueries({ queryKey: ["jobs"] });
      }
    })().catch(() => {
      // aborted on unmount, or the watch gave up after its reconnect window: the query's copy remains
    });
    return () => abort.abort();
  }, [id, watching, queryClient]);
  const job = live && initial && live.job.version >= initial.version ? live.job : initial;
  return { job, progress: live?.job === job ? live?.progress : undefined };
}

const TONES: Partial<Record<BulkJobState, "ok" | "warn" | "bad" | "busy">> = {
  [BulkJobState.SUCCEEDED]: "ok",
  [BulkJobState.PARTIALLY_SUCCEEDED]: "warn",
  [BulkJobState.FAILED]: "bad",
  [BulkJobState.CANCELLED]: "warn",
  [BulkJobState.ROLLED_BACK]: "warn",
};

export function JobState({ job }: { job: BulkJob }) {
  return <Badge tone={TONES[job.state] ?? "busy"}>{words(BulkJobState[job.state])}</Badge>;
}

/** jobProgress: items done of the items to do, for applying or for rolling back. */
export function jobProgress(job: BulkJob): { done: number; total: number } {
  const c = job.counts;
  if (!c) return { done: 0, total: 0 };
  if (job.state === BulkJobState.ROLLING_BACK || job.state === BulkJobState.ROLLED_BACK)
    return { done: Number(c.rolledBack), total: Number(c.applied) };
  const done = Number(c.applied + c.unchanged + c.conflict + c.failed);
  return { done, total: Number(c.valid) };
}

/** JobProgress is the bar with items/s and the time left, while the job runs. */
export function JobProgress({ job, progress }: { job: BulkJob; progress: BulkJobProgress | undefined }) {
  const { done, total } = jobProgress(job);
  const running = !isFinalState(job.state);
  const rate = progress?.itemsPerSecond ?? 0;
  const eta = progress?.estimatedTimeRemaining;
  const parts = [`${count(done)} of ${count(total)}`];
  if (running && rate > 0) parts.push(`${count(Math.round(rate))} items/s`);
  if (running && eta && (eta.seconds > 0n || eta.nanos > 0)) parts.push(`${duration(Number(eta.seconds) + eta.nanos / 1e9)} left`);
  if (job.state === BulkJobState.RECEIVING || job.state === BulkJobState.VALIDATING)
    return <span className="muted">Validating the file…</span>;
  return <Progress label={`Progress of ${job.options?.fileName || job.id}`} value={done} max={total} text={parts.join(" · ")} />;
}
