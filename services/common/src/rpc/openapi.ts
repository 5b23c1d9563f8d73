/**
 * GET /openapi.json: the OpenAPI 3.1 document of the Connect JSON endpoints
 * (generated from the protos into @stockroom/sdk by `npm run generate`),
 * narrowed to the services this process serves. Unauthenticated, like the
 * document itself is public; CORS as for the APIs (server.ts).
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import type http from "node:http";
import type http2 from "node:http2";
import { fileURLToPath } from "node:url";

export const OPENAPI_PATH = "/openapi.json";

type Json = Record<string, unknown>;
type Request = http.IncomingMessage | http2.Http2ServerRequest;
type Response = http.ServerResponse | http2.Http2ServerResponse;

let full: Json | undefined;

/** fullOpenApiDocument is the generated document for every public service. */
export function fullOpenApiDocument(): Json {
  full ??= JSON.parse(readFileSync(fileURLToPath(import.meta.resolve("@stockroom/sdk/openapi.json")), "utf8")) as Json;
  return structuredClone(full);
}

/** refs lists every "#/components/<kind>/<name>" a JSON value refers to. */
function refs(value: unknown, out: string[] = []): string[] {
  if (Array.isArray(value)) {
    for (const v of value) refs(v, out);
  } else if (value !== null && typeof value === "object") {
    for (const [k, v] of Object.entries(value)) {
      if (k === "$ref" && typeof v === "string" && v.startsWith("#/components/")) out.push(v);
      else refs(v, out);
    }
  }
  return out;
}

/**
 * openApiDocument narrows the document to the named services: their paths
 * and tags, and the components those reach (security schemes always).
 */
export function openApiDocument(serviceNames: readonly string[]): Json {
  const doc = fullOpenApiDocument();
  const names = new Set(serviceNames);
  const paths = doc["paths"] as Record<string, unknown>;
  for (const p of Object.keys(paths)) {
    if (!names.has(p.split("/")[1] ?? "")) delete paths[p];
  }
  doc["tags"] = (doc["tags"] as { name: string }[]).filter((t) => names.has(t.name));
  const components = doc["components"] as Record<string, Record<string, unknown>>;
  const reached = new Set<string>();
  const queue = refs(paths);
  for (let ref = queue.pop(); ref !== undefined; ref = queue.pop()) {
    if (reached.has(ref)) continue;
    reached.add(ref);
    const [, , kind, name] = ref.split("/");
    refs(components[kind!]?.[name!], queue);
  }
  for (const [kind, entries] of Object.entries(components)) {
    if (kind === "securitySchemes") continue;
    for (const name of Object.keys(entries)) {
      if (!reached.has(`#/components/${kind}/${name}`)) delete entries[name];
    }
  }
  return doc;
}

/**
 * openApiHandler answers GET and HEAD /openapi.json with the document for
 * the services (an ETag, so a client may revalidate); it returns false for
 * any other request.
 */
export function openApiHandler(serviceNames: readonly string[]): (req: Request, res: Response) => boolean {
  let body: Buffer | undefined;
  let etag = "";
  return (req, res) => {
    const path = (req.url ?? "").split("?")[0];
    if (path !== OPENAPI_PATH || (req.method !== "GET" && req.method !== "HEAD")) return false;
    if (!body) {
      body = Buffer.from(JSON.stringify(openApiDocument(serviceNames)));
      etag = `"${createHash("sha256").update(body).digest("base64url").slice(0, 27)}"`;
    }
    res.setHeader("ETag", etag);
    res.setHeader("Cache-Control", "no-cache");
    if (req.headers["if-none-match"] === etag) {
      res.statusCode = 304;
      res.end();
      return true;
    }
    res.statusCode = 200;
    res.setHeader("Content-Type", "application/json");
    res.setHeader("Content-Length", String(body.length));
    if (req.method === "HEAD") res.end();
    else res.end(body);
    return true;
  };
}
