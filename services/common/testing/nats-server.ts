/**
 * A nats-server of a test file's own (never the shared one), on a free port
 * with JetStream in a temporary directory, for tests that kill and restart
 * it: crashes, health, consumers through an outage.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { freePort, waitFor } from "./index.ts";

export interface OwnNatsServer {
  port: number;
  /** nats://127.0.0.1:<port> */
  url: string;
  /** kill stops it with SIGKILL (a crash: nothing flushed, clients see the socket close). */
  kill(): void;
  /** shutDown stops it with SIGTERM, as an operator restarting it does (clients are told "server shutdown"), and waits for it to exit. */
  shutDown(): Promise<void>;
  /** start runs it again on the same port and directory (its streams come back) and waits until it listens. */
  start(): Promise<void>;
  /** running is false between kill (or shutDown) and start. */
  readonly running: boolean;
  /** close kills it and removes its directory. */
  close(): void;
}

/** startNatsServer runs /usr/sbin/nats-server on a free loopback port and waits until it listens. */
export async function startNatsServer(name: string): Promise<OwnNatsServer> {
  const port = await freePort();
  const dir = mkdtempSync(path.join(tmpdir(), `stockroom-${name}-nats-`));
  let child: ChildProcess | undefined;
  const start = async () => {
    child = spawn("/usr/sbin/nats-server", ["-a", "127.0.0.1", "-p", String(port), "-js", "-sd", dir], { stdio: "ignore" });
    await waitFor(
      `nats-server to listen on ${port}`,
      () =>
        new Promise<true | undefined>((resolve) => {
          const s = net.connect({ host: "127.0.0.1", port }, () => (s.destroy(), resolve(true)));
          s.once("error", () => resolve(undefined));
        }),
      10_000,
    );
  };
  const kill = () => {
    child?.kill("SIGKILL");
    child = undefined;
  };
  const shutDown = async () => {
    const stopping = child;
    child = undefined;
    if (!stopping || stopping.exitCode !== null) return;
    const exited = new Promise((resolve) => stopping.once("exit", resolve));
    stopping.kill("SIGTERM");
    await exited;
  };
  await start();
  return {
    port,
    url: `nats://127.0.0.1:${port}`,
    kill,
    shutDown,
    start,
    get running() {
      return child !== undefined;
    },
    close() {
      kill();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
