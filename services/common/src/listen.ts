import type net from "node:net";

/**
 * listen starts server on host:port. A port that is taken rejects with
 * inUse, which says what to do about it (the setting to change), and the
 * EADDRINUSE error as its cause; any other error as it is.
 */
export function listen(server: net.Server, port: number, host: string, inUse: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once("error", (error: NodeJS.ErrnoException) =>
      reject(error.code === "EADDRINUSE" ? new Error(inUse, { cause: error }) : error),
    );
    server.listen(port, host, () => resolve());
  });
}
