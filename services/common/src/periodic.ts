import type { TaskFailures } from "./task-failures.ts";

/** Periodic is a background task on a schedule; stop() ends it and waits for a run in progress. */
export interface Periodic {
  stop(): Promise<void>;
}

/**
 * every runs task every everyMs (everyMs 0 or absent: never). Runs never
 * overlap: a run that outlasts the interval skips the ticks it covers. stop()
 * clears the schedule, aborts the signal the running task was given (long
 * tasks check it between batches) and waits for that run.
 *
 * With failures (task-failures.ts) a run that rejects is recorded there,
 * which logs it when it says something new, and the next run waits
 * failures.delayMs (the interval doubling per consecutive failure); the first
 * success says the task resumed. Without it the task handles its own errors
 * and one that escapes is ignored. Either way the schedule survives it.
 */
export function every(everyMs: number | undefined, task: (signal: AbortSignal) => Promise<unknown>, failures?: TaskFailures): Periodic {
  if (!everyMs) return { stop: async () => {} };
  const stopping = new AbortController();
  let running: Promise<unknown> | undefined;
  let timer: NodeJS.Timeout;
  const run = () => {
    const startedAt = Date.now();
    running = task(stopping.signal)
      .then(
        () => failures?.succeeded(),
        (error: unknown) => failures?.failed(error),
      )
      .finally(() => {
        running = undefined;
        if (stopping.signal.aborted) return;
        const elapsed = Date.now() - startedAt;
        // After a success: the next tick this run did not cover. After a failure: the backoff, from its end.
        const delay = failures && failures.failures > 0 ? failures.delayMs(everyMs) : everyMs - (elapsed % everyMs);
        timer = setTimeout(run, delay);
      });
  };
  timer = setTimeout(run, everyMs);
  return {
    async stop() {
      clearTimeout(timer);
      stopping.abort();
      await running;
    },
  };
}
