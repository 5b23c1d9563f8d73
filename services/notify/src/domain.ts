/**
 * Webhook rules: which event types exist and how endpoints filter them,
 * which URLs are acceptable targets, how retries back off and when an
 * endpoint is paused. Pure: no proto, no database.
 */
import { randomBytes } from "node:crypto";
import { BlockList, isIP } from "node:net";
import type { FieldViolation } from "@stockroom/common";

/** EVENT_TYPES are the event types a webhook can receive, by kind (the part before the dot). */
export const EVENT_TYPES: Record<string, readonly string[]> = {
  product: ["product.created", "product.updated", "product.deleted"],
  order: ["order.created", "order.paid", "order.fulfilled", "order.cancelled", "order.expired"],
  bulk_job: ["bulk_job.finished"],
};

export const LIMITS = {
  endpointsPerMerchant: 20,
  patternsPerEndpoint: 20,
  urlLength: 2048,
  descriptionLength: 500,
  /** The longest a rotated-out secret may keep signing. */
  previousSecretMaxMs: 7 * 24 * 3_600_000,
  previousSecretDefaultMs: 24 * 3_600_000,
} as const;

/**
 * validatePatterns checks an endpoint's event_types: "*", "<kind>.*" or an
 * exact known type. Unknown names are refused rather than silently never
 * matching (a typo would otherwise look like a quiet endpoint).
 */
export function validatePatterns(field: string, patterns: readonly string[], violations: FieldViolation[]): void {
  if (patterns.length === 0) {
    violations.push({ field, description: 'must name at least one event type (e.g. "product.*", "order.paid", or "*" for all)' });
    return;
  }
  if (patterns.length > LIMITS.patternsPerEndpoint) {
    violations.push({ field, description: `must have at most ${LIMITS.patternsPerEndpoint} entries` });
  }
  const known = new Set(Object.values(EVENT_TYPES).flat());
  patterns.forEach((p, i) => {
    const kind = p.endsWith(".*") ? p.slice(0, -2) : undefined;
    const ok = p === "*" || (kind !== undefined && kind in EVENT_TYPES) || known.has(p);
    if (!ok) {
      violations.push({
        field: `${field}[${i}]`,
        description: `"${p}" is not "*", a kind ("${Object.keys(EVENT_TYPES).join('.*", "')}.*") or a known event type`,
      });
    }
  });
}

/** matchesPattern tells whether an endpoint with these patterns receives an event type. */
export function matchesPatterns(patterns: readonly string[], eventType: string): boolean {
  return patterns.some((p) => p === "*" || p === eventType || (p.endsWith(".*") && eventType.startsWith(p.slice(0, -1))));
}

/**
 * BLOCKED holds the addresses a production server must never call on a
 * merchant's behalf: loopback, private, carrier-grade NAT, link-local
 * (cloud metadata at 169.254.169.254), multicast, reserved and
 * documentation ranges. BlockList checks IPv4-mapped IPv6 addresses
 * (::ffff:127.0.0.1) against the IPv4 rules, so they cannot smuggle them.
 */
const BLOCKED = new BlockList();
for (const [net, prefix] of [
  ["0.0.0.0", 8],
  ["10.0.0.0", 8],
  ["100.64.0.0", 10],
  ["127.0.0.0", 8],
  ["169.254.0.0", 16],
  ["172.16.0.0", 12],
  ["192.0.0.0", 24],
  ["192.0.2.0", 24],
  ["192.168.0.0", 16],
  ["198.18.0.0", 15],
  ["198.51.100.0", 24],
  ["203.0.113.0", 24],
  ["224.0.0.0", 4],
  ["240.0.0.0", 4],
] as const)
  BLOCKED.addSubnet(net, prefix, "ipv4");
for (const [net, prefix] of [
  ["::", 128],
  ["::1", 128],
  ["fc00::", 7],
  ["fe80::", 10],
  ["ff00::", 8],
  ["2001:db8::", 32],
] as const)
  BLOCKED.addSubnet(net, prefix, "ipv6");

/** isPublicAddress tells whether an IP address may be a webhook target in production. */
export function isPublicAddress(address: string): boolean {
  const family = isIP(address);
  if (family === 0) return false;
  return !BLOCKED.check(address, family === 4 ? "ipv4" : "ipv6");
}

/** hostAddress returns a URL hostname's IP literal without IPv6 brackets, or undefined for a name. */
export function hostAddress(hostname: string): string | undefined {
  const bare = hostname.startsWith("[") && hostname.endsWith("]") ? hostname.slice(1, -1) : hostname;
  return isIP(bare) ? bare : undefined;
}

/**
 * validateWebhookUrl checks a target URL and returns it normalized. Names
 * are checked again when the dispatcher resolves them (every attempt), so
 * a name that resolves to a private address is refused there too.
 */
export function validateWebhookUrl(field: string, raw: string, allowPrivateTargets: boolean, violations: FieldViolation[]): string {
  if (raw === "") {
    violations.push({ field, description: "is required" });
    return raw;
  }
  if (raw.length > LIMITS.urlLength) {
    violations.push({ field, description: `must be at most ${LIMITS.urlLength} characters` });
    return raw;
  }
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    violations.push({ field, description: "is not an absolute URL" });
    return raw;
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") {
    violations.push({ field, description: "must be an http or https URL" });
  }
  if (url.username !== "" || url.password !== "") {
    violations.push({ field, description: "must not carry credentials; verify the Stockroom-Signature header instead" });
  }
  if (!allowPrivateTargets) {
    const address = hostAddress(url.hostname);
    const host = url.hostname.toLowerCase();
    const localName =
      host === "localhost" || host.endsWith(".localhost") || host.endsWith(".local") || host.endsWith(".internal") || !host.includes(".");
    if (address !== undefined ? !isPublicAddress(address) : localName) {
      violations.push({ field, description: "must point at a public internet address, not a private, loopback or link-local one" });
    }
  }
  return url.toString();
}

/**
 * retryDelayMs is the backoff before the next attempt after `attempts`
 * failures: exponential from minMs, capped at maxMs, with full jitter
 * (uniform in [0, cap]) so endpoints recovering from an outage are not hit
 * by every delivery at the same instant.
 */
export function retryDelayMs(attempts: number, minMs: number, maxMs: number, random: () => number = Math.random): number {
  const cap = Math.min(maxMs, minMs * 2 ** Math.min(Math.max(attempts - 1, 0), 40));
  return Math.floor(random() * cap);
}

/**
 * pauseMs is how long an endpoint is paused after `failures` failures in a
 * row: nothing below afterFailures, then doubling from minMs up to maxMs
 * (half of it jittered). While paused none of its deliveries is tried, so a
 * dead endpoint's backlog never occupies the dispatcher; afterwards one
 * probe at a time until an attempt succeeds.
 */
export function pauseMs(
  failures: number,
  circuit: { afterFailures: number; minMs: number; maxMs: number },
  random: () => number = Math.random,
): number | undefined {
  if (failures < circuit.afterFailures) return undefined;
  const cap = Math.min(circuit.maxMs, circuit.minMs * 2 ** Math.min(failures - circuit.afterFailures, 40));
  return Math.round(cap / 2 + (random() * cap) / 2);
}

/** newSigningSecret returns 256 random bits, prefixed so a leaked one is recognizable. */
export function newSigningSecret(): string {
  return `whsec_${randomBytes(32).toString("base64url")}`;
}
