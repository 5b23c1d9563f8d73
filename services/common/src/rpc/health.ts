import { Code, ConnectError, type ConnectRouter } from "@connectrpc/connect";
import { Health, HealthCheckResponse_ServingStatus as Status } from "@stockroom/sdk/gen/grpc/health/v1/health_pb.js";

export { Status as ServingStatus };

/**
 * HealthRegistry holds the serving status of the server ("") and of each
 * service, and serves grpc.health.v1 (Check, List, Watch) from it.
 */
export class HealthRegistry {
  private readonly statuses = new Map<string, Status>();
  private readonly listeners = new Set<() => void>();
  private closed = false;

  constructor(services: string[]) {
    this.statuses.set("", Status.SERVING);
    for (const s of services) this.statuses.set(s, Status.SERVING);
  }

  /** set changes one service's status ("" is the whole server); after close() nothing changes it back. */
  set(service: string, status: Status): void {
    if (this.closed || this.statuses.get(service) === status) return;
    this.statuses.set(service, status);
    for (const l of this.listeners) l();
  }

  /** setAll changes every status at once, e.g. to NOT_SERVING before a drain. */
  setAll(status: Status): void {
    for (const s of this.statuses.keys()) this.set(s, status);
  }

  /** close reports NOT_SERVING to every watcher, then ends their streams so a drain is not held up. */
  close(): void {
    this.setAll(Status.NOT_SERVING);
    this.closed = true;
    for (const l of this.listeners) l();
  }

  get(service: string): Status | undefined {
    return this.statuses.get(service);
  }

  register(router: ConnectRouter): void {
    router.service(Health, {
      check: (req) => {
        const status = this.get(req.service);
        if (status === undefined) throw new ConnectError(`unknown service "${req.service}"`, Code.NotFound);
        return { status };
      },
      list: () => ({
        statuses: Object.fromEntries([...this.statuses].map(([k, status]) => [k, { status }])),
      }),
      watch: (req, ctx) => this.watch(req.service, ctx.signal),
    });
  }

  private async *watch(service: string, signal: AbortSignal) {
    let wake: () => void = () => {};
    const listener = () => wake();
    this.listeners.add(listener);
    try {
      let last: Status | undefined;
      while (!signal.aborted) {
        const status = this.get(service) ?? Status.SERVICE_UNKNOWN;
        if (status !== last) {
          last = status;
          yield { status };
          continue; // re-read: the status may have changed while suspended
        }
        if (this.closed) break;
        await new Promise<void>((resolve) => {
          wake = resolve;
          signal.addEventListener("abort", () => resolve(), { once: true });
        });
      }
    } finally {
      this.listeners.delete(listener);
    }
  }
}
