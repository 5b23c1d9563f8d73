/**
 * CORS for browsers calling the API from another origin (Connect-Web, the
 * SDK's browser entry). Off by default: with no allowed origins the server
 * sends no CORS headers and browsers only reach it from its own origin (or
 * through a same-origin proxy). The API authenticates with a bearer API key
 * in the Authorization header, never cookies, so no credentials mode.
 */
import type http from "node:http";
import type http2 from "node:http2";
import { cors as connectCors } from "@connectrpc/connect";

/** MAX_AGE_S: how long a browser may cache a preflight answer. */
const MAX_AGE_S = 7200;
const ALLOW_METHODS = connectCors.allowedMethods.join(", ");
const ALLOW_HEADERS = [...connectCors.allowedHeaders, "Authorization"].join(", ");
const EXPOSE_HEADERS = connectCors.exposedHeaders.join(", ");

type Request = http.IncomingMessage | http2.Http2ServerRequest;
type Response = http.ServerResponse | http2.Http2ServerResponse;

/**
 * corsHandler returns a function that adds CORS headers for an allowed
 * Origin and answers its preflight (OPTIONS) itself; it returns true when
 * the request is answered. Other requests go on to the RPC handler.
 */
export function corsHandler(origins: readonly string[]): (req: Request, res: Response) => boolean {
  const any = origins.includes("*");
  const allowed = new Set(origins);
  return (req, res) => {
    const origin = req.headers.origin;
    if (origins.length === 0 || typeof origin !== "string" || !(any || allowed.has(origin))) return false;
    res.setHeader("Access-Control-Allow-Origin", any ? "*" : origin);
    if (!any) res.setHeader("Vary", "Origin");
    if (req.method === "OPTIONS" && req.headers["access-control-request-method"] !== undefined) {
      res.setHeader("Access-Control-Allow-Methods", ALLOW_METHODS);
      res.setHeader("Access-Control-Allow-Headers", ALLOW_HEADERS);
      res.setHeader("Access-Control-Max-Age", String(MAX_AGE_S));
      res.statusCode = 204;
      res.end();
      return true;
    }
    res.setHeader("Access-Control-Expose-Headers", EXPOSE_HEADERS);
    return false;
  };
}
