/**
 * One webhook attempt over node:http(s). Redirects are not followed (a 3xx
 * is a failure), the whole exchange has one deadline, and unless private
 * targets are allowed every address a name resolves to must be public:
 * the check runs in the connection's own DNS lookup, so a name that
 * resolves to a public address at registration and to an internal one
 * later (DNS rebinding) is still refused.
 */
import { lookup as dnsLookup, type LookupAddress } from "node:dns";
import http from "node:http";
import https from "node:https";
import type { LookupFunction } from "node:net";
import type { AttemptOutcome } from "./deliveries.ts";
import { hostAddress, isPublicAddress } from "./domain.ts";

export interface Sender {
  post(url: string, body: string, headers: Record<string, string>): Promise<AttemptOutcome>;
  /** close ends the kept-alive connections. */
  close(): void;
}

/**
 * createSender keeps connections alive per origin. The agents never queue a
 * request (maxSockets is the dispatcher's whole pool): many merchants'
 * endpoints may share a host, and the dispatcher alone decides how many
 * requests go to one endpoint.
 */
export function createSender(options: { timeoutMs: number; allowPrivateTargets: boolean; maxSockets: number }): Sender {
  const agentOptions = { keepAlive: true, maxSockets: options.maxSockets, timeout: options.timeoutMs };
  const agents = { "http:": new http.Agent(agentOptions), "https:": new https.Agent(agentOptions) };
  const lookup = options.allowPrivateTargets ? undefined : publicOnlyLookup;

  return {
    post(target, body, headers) {
      const url = new URL(target);
      const protocol = url.protocol === "https:" ? "https:" : "http:";
      const literal = hostAddress(url.hostname);
      if (!options.allowPrivateTargets && literal !== undefined && !isPublicAddress(literal)) {
        return Promise.resolve({ ok: false, status: 0, error: `${literal} is not a public address` });
      }
      return new Promise<AttemptOutcome>((resolve) => {
        const request = (protocol === "https:" ? https : http).request(url, {
          method: "POST",
          agent: agents[protocol],
          headers: { ...headers, "content-type": "application/json", "content-length": Buffer.byteLength(body) },
          signal: AbortSignal.timeout(options.timeoutMs),
          ...(lookup ? { lookup } : {}),
        });
        request.on("error", (error: Error) => {
          const timedOut = error.name === "AbortError" || error.name === "TimeoutError";
          resolve({ ok: false, status: 0, error: timedOut ? `no answer within ${options.timeoutMs} ms` : error.message });
        });
        request.on("response", (response) => {
          const status = response.statusCode ?? 0;
          const chunks: Buffer[] = [];
          let size = 0;
          response.on("data", (chunk: Buffer) => {
            if (size < 300) chunks.push(chunk);
            size += chunk.length;
          });
          response.on("error", () => {}); // the request's error handler reports aborts
          response.on("close", () => resolve({ ok: false, status, error: "the connection closed before the answer ended" }));
          response.on("end", () => {
            if (status >= 200 && status < 300) return resolve({ ok: true, status, error: "" });
            const text = Buffer.concat(chunks).toString("utf8").slice(0, 300).trim();
            const redirect = status >= 300 && status < 400 ? " (redirects are not followed)" : "";
            resolve({ ok: false, status, error: `HTTP ${status}${redirect}${text ? `: ${text}` : ""}` });
          });
        });
        request.end(body);
      });
    },
    close() {
      agents["http:"].destroy();
      agents["https:"].destroy();
    },
  };
}

/** publicOnlyLookup resolves like dns.lookup but fails if any address is not public. */
const publicOnlyLookup: LookupFunction = (hostname, options, callback) => {
  dnsLookup(hostname, { ...options, all: true }, (error, addresses: LookupAddress[]) => {
    if (error) return callback(error, "", 0);
    const blocked = addresses.find((a) => !isPublicAddress(a.address));
    if (blocked || addresses.length === 0) {
      const refusal = Object.assign(new Error(`${hostname} resolves to ${blocked?.address ?? "nothing"}, which is not a public address`), {
        code: "ENOTPUBLIC",
      });
      return callback(refusal, "", 0);
    }
    if (options.all) return (callback as unknown as (e: null, a: LookupAddress[]) => void)(null, addresses);
    callback(null, addresses[0]!.address, addresses[0]!.family);
  });
};
