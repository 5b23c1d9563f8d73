/** Periodic is a background task on a schedule; stop() ends it and waits for a run in progress. */
export interface Periodic {
  stop(): Promise<void>;
}

/**
 * every runs task every everyMs (everyMs 0 or absent: never). Runs never
 * overlap: a run that outlasts the interval skips the ticks it covers. stop()
 * clears the schedule, aborts the signal the running task was given (long
 * tasks check it between batches) and waits for that run. The task handles
 * its own errors; one that escapes is ignored so the schedule survives it.
 */
export function every(everyMs: number | undefined, task: (signal: AbortSignal) => Promise<unknown>): Periodic {
  if (!everyMs) return { stop: async () => {} };
  const stopping = new AbortController();
  let running: Promise<unknown> | undefined;
  const timer = setInterval(() => {
    running ??= task(stopping.signal)
      .catch(() => {})
      .finally(() => (running = undefined));
  }, everyMs);
  return {
    async stop() {
      clearInterval(timer);
      stopping.abort();
      await running;
    },
  };
}
