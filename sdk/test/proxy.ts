/**
 * A loopback TCP proxy for failure tests: it forwards every connection to the
 * API, counts the bytes clients send, and when armed cuts the connection
 * that carries the n-th byte after arming (both sides, as a network failure
 * would), once.
 */
import net from "node:net";

export interface DropProxy {
  url: string;
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
  close(): Promise<void>;
}

export async function startDropProxy(target: string): Promise<DropProxy> {
  const { hostname, port } = new URL(target);
  const sockets = new Set<net.Socket>();
  let up = 0;
  let drops = 0;
  let armed: { remaining: number; dropped: () => void } | undefined;
  let armedDown: { marker: Buffer; dropped: () => void } | undefined;

  const server = net.createServer((client) => {
    const upstream = net.connect({ host: hostname, port: Number(port) });
    sockets.add(client);
    sockets.add(upstream);
    const cut = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on("close", () => (sockets.delete(client), upstream.destroy()));
    upstream.on("close", () => (sockets.delete(upstream), client.destroy()));
    client.on("error", cut);
    upstream.on("error", cut);
    client.on("data", (chunk: Buffer) => {
      up += chunk.length;
      if (armed) {
        armed.remaining -= chunk.length;
        if (armed.remaining <= 0) {
          const done = armed.dropped;
          armed = undefined;
          drops++;
          cut();
          done();
          return;
        }
      }
      if (!upstream.write(chunk)) client.pause();
    });
    upstream.on("drain", () => client.resume());
    upstream.on("data", (chunk: Buffer) => {
      if (armedDown && chunk.includes(armedDown.marker)) {
        const done = armedDown.dropped;
        armedDown = undefined;
        drops++;
        cut();
        done();
        return;
      }
      if (!client.write(chunk)) upstream.pause();
    });
    client.on("drain", () => upstream.resume());
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address() as net.AddressInfo;
  return {
    url: `http://127.0.0.1:${address.port}`,
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
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
