import { unavailableBackend } from "@stockroom/common";

/**
 * stopOnOutage ends an operator's tool that could not reach its database
 * (or NATS) with one line saying which and what to do, and exit code 1:
 * nothing is wrong with the tool, so no stack trace. Any other error is
 * thrown on, as it is. setting names where the tool found the address.
 */
export function stopOnOutage(tool: string, error: unknown, setting = "DATABASE_URL"): void {
  const backend = unavailableBackend(error);
  if (!backend) throw error;
  const cause = error instanceof Error ? error.message : String(error);
  console.error(`${tool}: the ${backend} is unavailable (${cause}); start it, or point ${setting} at one that runs, and run this again`);
  process.exitCode = 1;
}
