/**
 * Webhook signatures, Stripe-style: `Stockroom-Signature: t=<unix seconds>,
 * v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`. The timestamp is signed too,
 * so a captured request cannot be replayed later than the receiver's
 * tolerance. During a secret rotation the header carries one v1 per valid
 * secret; a receiver accepts the request if any of them matches its secret.
 */
import { createHmac, timingSafeEqual } from "node:crypto";

export const SIGNATURE_HEADER = "Stockroom-Signature";

/** sign computes one v1 value. */
function sign(secret: string, timestamp: number, body: string): string {
  return createHmac("sha256", secret).update(`${timestamp}.${body}`).digest("hex");
}

/** signatureHeader builds the header value for a body, signed with each of the secrets. */
export function signatureHeader(body: string, secrets: readonly string[], timestamp = Math.floor(Date.now() / 1000)): string {
  return [`t=${timestamp}`, ...secrets.map((s) => `v1=${sign(s, timestamp, body)}`)].join(",");
}

/**
 * verifySignature checks a received header against the raw body and the
 * endpoint's secret, refusing timestamps more than toleranceSec away from
 * now. Receivers may copy it (see the README's Webhooks section).
 */
export function verifySignature(
  header: string,
  body: string,
  secret: string,
  options: { toleranceSec?: number; now?: number } = {},
): boolean {
  const parts = header.split(",").map((p) => p.trim().split("="));
  const t = Number(parts.find(([k]) => k === "t")?.[1]);
  if (!Number.isInteger(t)) return false;
  const now = options.now ?? Math.floor(Date.now() / 1000);
  if (Math.abs(now - t) > (options.toleranceSec ?? 300)) return false;
  const expected = Buffer.from(sign(secret, t, body), "hex");
  return parts.some(([k, v]) => {
    if (k !== "v1" || v === undefined || !/^[0-9a-f]{64}$/.test(v)) return false;
    return timingSafeEqual(Buffer.from(v, "hex"), expected);
  });
}
