/**
 * A background task's failures, logged so that an outage reads as a few
 * lines rather than one per run.
 *
 * Sweeps, reconcilers, relays and sealers run every few seconds. While
 * MariaDB was down under `npm start` each wrote an error with a stack on
 * every run: 154 lines in an 11-minute outage, which buried the one line
 * that said what was wrong. Now a task's first failure is logged (a warning
 * naming the backend when it is one that cannot be reached, unavailable.ts;
 * an error otherwise), later ones only when the error changes or once a
 * minute with their count, and the first success after them says the task
 * resumed and after how many failures. delayMs gives the pause before the
 * next try: the task's own interval doubling per failure, up to maxDelayMs,
 * so a down backend is not asked every few hundred milliseconds.
 */
import type { Logger } from "./observe/log.ts";
import { unavailableBackend } from "./unavailable.ts";

export interface TaskFailures {
  /** failed records a run's failure and logs it when it says something new (above). */
  failed(error: unknown, fields?: Record<string, unknown>): void;
  /** succeeded ends a run of failures, saying so once. */
  succeeded(): void;
  /** delayMs is the pause before the next try: everyMs after a success, doubling per consecutive failure up to maxDelayMs. */
  delayMs(everyMs: number): number;
  /** failures counts the consecutive failed runs (0 after a success). */
  readonly failures: number;
}

export interface TaskFailuresOptions {
  /** Fields added to each line (a shard, a stream). */
  fields?: Record<string, unknown>;
  /** A failure like the last one logged is logged again after this long (default 60 s). */
  repeatEveryMs?: number;
  /** The longest pause delayMs gives (default 10 s; never less than the task's interval). */
  maxDelayMs?: number;
  now?: () => number;
}

/** taskFailures returns the failure log of the task named task ("outbox relay round", "order sweep"). */
export function taskFailures(log: Logger, task: string, options: TaskFailuresOptions = {}): TaskFailures {
  const { fields = {}, repeatEveryMs = 60_000, maxDelayMs = 10_000, now = Date.now } = options;
  let failures = 0;
  let firstAt = 0;
  let loggedAt = 0;
  let loggedKind = "";
  return {
    get failures() {
      return failures;
    },
    failed(error, more) {
      const at = now();
      if (failures === 0) firstAt = at;
      failures++;
      const backend = unavailableBackend(error);
      // One kind per backend outage, whatever its socket code or text; otherwise the error's message.
      const kind = backend ?? (error instanceof Error ? `${error.name}: ${error.message}` : String(error));
      if (failures > 1 && kind === loggedKind && at - loggedAt < repeatEveryMs) return;
      loggedAt = at;
      loggedKind = kind;
      const line = { ...fields, ...more, failures, ...(failures > 1 && { sinceMs: at - firstAt }), error };
      if (backend) log.warn(`${task} failed: the ${backend} is unavailable; retrying with backoff`, { ...line, backend });
      else log.error(`${task} failed`, line);
    },
    succeeded() {
      if (failures === 0) return;
      log.info(`${task} resumed`, { ...fields, failedRuns: failures, afterMs: now() - firstAt });
      failures = 0;
      loggedKind = "";
    },
    delayMs(everyMs) {
      if (failures === 0) return everyMs;
      return Math.min(Math.max(maxDelayMs, everyMs), everyMs * 2 ** Math.min(failures - 1, 16));
    },
  };
}
