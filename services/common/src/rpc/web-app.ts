/**
 * The merchant dashboard (the `web/` workspace, built by Vite into
 * web/dist) at `/` on every API port: the page and the API share one
 * origin, so the browser needs no CORS and sends its API key only to the
 * server that issued it. Only GET and HEAD of `/`, `/index.html` and
 * `/assets/<file>` are answered here; everything else goes on to the RPC
 * router. Assets are content-hashed by the build, so they are cached for
 * a year (and gzipped once in memory); the page itself is revalidated.
 */
import { existsSync, readFileSync } from "node:fs";
import type http from "node:http";
import type http2 from "node:http2";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";

type Request = http.IncomingMessage | http2.Http2ServerRequest;
type Response = http.ServerResponse | http2.Http2ServerResponse;

const TYPES: Record<string, string> = {
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".woff2": "font/woff2",
  ".json": "application/json",
};

/** The page may load only its own scripts and styles and talk only to its own origin. */
const SECURITY_HEADERS: Record<string, string> = {
  "Content-Security-Policy":
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
  "X-Content-Type-Options": "nosniff",
  "Referrer-Policy": "no-referrer",
};

const NOT_BUILT = `<!doctype html><html lang="en"><meta charset="utf-8"><title>stockroom</title>
<p>The dashboard is not built on this server. Build it with <code>npm run build -w web</code> (<code>npm start</code> does),
or point <code>WEB_DIR</code> at a build.</p></html>`;

/** defaultWebDir is the build of the web workspace, when it is installed beside this package. */
export function defaultWebDir(): string | undefined {
  try {
    return path.join(path.dirname(fileURLToPath(import.meta.resolve("@stockroom/web/package.json"))), "dist");
  } catch {
    return undefined;
  }
}

/**
 * webAppHandler serves the dashboard's build from dir; it returns true when
 * it answered. Without a build it answers `/` with how to make one.
 */
export function webAppHandler(dir: string | undefined): (req: Request, res: Response) => boolean {
  const assets = new Map<string, { body: Buffer; gzip: Buffer | undefined; type: string }>();
  return (req, res) => {
    if (req.method !== "GET" && req.method !== "HEAD") return false;
    const url = (req.url ?? "").split("?", 1)[0]!;
    const isPage = url === "/" || url === "/index.html";
    const asset = /^\/assets\/[A-Za-z0-9_.-]+$/.exec(url)?.[0];
    if (!isPage && !asset) return false;
    for (const [k, v] of Object.entries(SECURITY_HEADERS)) res.setHeader(k, v);
    if (isPage) {
      const file = dir && path.join(dir, "index.html");
      const built = file !== undefined && existsSync(file);
      res.statusCode = built ? 200 : 404;
      res.setHeader("Content-Type", "text/html; charset=utf-8");
      res.setHeader("Cache-Control", "no-cache");
      if (req.method === "HEAD") res.end();
      else res.end(built ? readFileSync(file) : NOT_BUILT);
      return true;
    }
    let entry = assets.get(asset!);
    if (!entry && dir) {
      const file = path.join(dir, asset!);
      if (existsSync(file)) {
        const body = readFileSync(file);
        const type = TYPES[path.extname(file)] ?? "application/octet-stream";
        entry = { body, type, gzip: type.startsWith("text/") || type.includes("svg") ? gzipSync(body) : undefined };
        assets.set(asset!, entry);
      }
    }
    if (!entry) {
      res.statusCode = 404;
      res.end();
      return true;
    }
    const gzip = entry.gzip && /\bgzip\b/.test(String(req.headers["accept-encoding"] ?? ""));
    const body = gzip ? entry.gzip! : entry.body;
    res.statusCode = 200;
    res.setHeader("Content-Type", entry.type);
    res.setHeader("Cache-Control", "public, max-age=31536000, immutable");
    res.setHeader("Vary", "Accept-Encoding");
    if (gzip) res.setHeader("Content-Encoding", "gzip");
    res.setHeader("Content-Length", String(body.length));
    if (req.method === "HEAD") res.end();
    else res.end(body);
    return true;
  };
}
