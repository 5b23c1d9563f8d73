/**
 * A loopback TCP proxy for failure tests: it forwards every connection to a
 * target (the API, or MariaDB), counts the bytes clients send, and when armed
 * cuts the connection that carries the n-th byte after arming (both sides, as
 * a network failure would), once. refuse() takes the target away altogether
 * (no listener, every connection cut) until accept().
 */
import net from "node:net";

export interface DropProxy {
  url: string;
  port: number;
  /** Bytes clients sent through the proxy since it started. */
  bytesUp(): number;
  /** How many connections were cut. */
  drops(): number;
  /** dropOnceAfter cuts the connection carrying the n-th client byte from now on, then passes everything. */
  dropOnceAfter(bytes: number): Promise<void>;
  /** dropOnceOnResponse cuts the connection instead of passing the first server bytes that contain marker. */
  dropOnceOnResponse(marker: string): Promise<void>;
  /** cutAll cuts every open connection now. */
  cutAll(): void;
  /** refuse stops listening and cuts every connection: new ones are refused, as by a server that is down. */
  refuse(): Promise<void>;
  /** accept listens again, on the same port. */
  accept(): Promise<void>;
  close(): Promise<void>;
}

/** startDropProxy proxies to target, a URL with host and port (any scheme). */
export async function startDropProxy(target: string): Promise<DropProxy> {
  const to = new URL(target);
  const sockets = new Set<net.Socket>();
  let up = 0;
  let drops = 0;
  let armed: { remaining: number; dropped: () => void } | undefined;
  let armedDown: { marker: Buffer; dropped: () => void } | undefined;

  const server = net.createServer((client) => {
    const upstream = net.connect({ host: to.hostname, port: Number(to.port) });
    sockets.add(client);
    sockets.add(upstream);
    const cut = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on("close", () => (sockets.delete(client), upstream.destroy()));
    upstream.on("close", () => (sockets.delete(upstream), client.destroy()));
    /** drop cuts this connection for an armed drop and tells whoever armed it. */
    const drop = (done: () => void) => {
      drops++;
      cut();
      done();
    };
    client.on("error", cut);
    upstream.on("error", cut);
    client.on("data", (chunk: Buffer) => {
      up += chunk.length;
      if (armed) {
        armed.remaining -= chunk.length;
        if (armed.remaining <= 0) {
          const done = armed.dropped;
          armed = undefined;
          return drop(done);
        }
      }
      if (!upstream.write(chunk)) client.pause();
    });
    upstream.on("drain", () => client.resume());
    upstream.on("data", (chunk: Buffer) => {
      if (armedDown && chunk.includes(armedDown.marker)) {
        const done = armedDown.dropped;
        armedDown = undefined;
        return drop(done);
      }
      if (!client.write(chunk)) upstream.pause();
    });
    client.on("drain", () => upstream.resume());
  });
  const listenOn = (port: number) => new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  await listenOn(0);
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    bytesUp: () => up,
    drops: () => drops,
    dropOnceAfter(bytes) {
      return new Promise<void>((resolve) => (armed = { remaining: bytes, dropped: resolve }));
    },
    dropOnceOnResponse(marker) {
      return new Promise<void>((resolve) => (armedDown = { marker: Buffer.from(marker), dropped: resolve }));
    },
    cutAll() {
      drops++;
      for (const s of sockets) s.destroy();
    },
    async refuse() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of sockets) s.destroy();
      await closed;
    },
    accept: () => listenOn(port),
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
