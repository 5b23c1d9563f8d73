/** ApiConfig is what every API process needs; parseApiConfig is pure over an env map. */
export interface ApiConfig {
  host: string;
  port: number;
  databaseUrl: string;
  dbPoolSize: number;
  /** NATS servers, comma-separated. */
  natsUrl: string;
  /** OTLP endpoint; tracing is off without one. */
  otlpEndpoint: string | undefined;
  logLevel: "info" | "warn" | "error" | "silent";
  /** How long SIGTERM waits for in-flight calls. */
  drainMs: number;
  /** How long a verified API key is trusted before it is checked again. */
  authCacheMs: number;
  /** Port of /metrics, /healthz and /readyz (METRICS_PORT; 0 = any free port; unset or "off" = none). */
  metricsPort: number | undefined;
  /** How often MySQL and NATS are probed for health (HEALTH_PROBE_MS; 0 = never). */
  healthProbeMs: number;
  /** How often per-merchant call statistics are written for the SLA report (SLA_FLUSH_MS; 0 = not recorded). */
  slaFlushMs: number;
  /** Browser origins allowed to call the API cross-origin (CORS_ALLOWED_ORIGINS: "*" or comma-separated; none by default). */
  corsOrigins: string[];
}

export type Env = Record<string, string | undefined>;

export const DEFAULT_DATABASE_URL = "mysql://root@127.0.0.1:3306/stockroom";

export function parseApiConfig(env: Env): ApiConfig {
  const logLevel = env["LOG_LEVEL"] ?? "info";
  if (!["info", "warn", "error", "silent"].includes(logLevel)) {
    throw new Error(`LOG_LEVEL must be info, warn, error or silent, not "${logLevel}"`);
  }
  const databaseUrl = checkDatabaseUrl("DATABASE_URL", env["DATABASE_URL"] ?? DEFAULT_DATABASE_URL);
  return {
    host: env["HOST"] ?? "127.0.0.1",
    port: readInt(env, "PORT", 8080, 0, 65535),
    databaseUrl,
    dbPoolSize: readInt(env, "DB_POOL_SIZE", 20, 1, 1000),
    natsUrl: env["NATS_URL"] ?? "nats://127.0.0.1:4222",
    otlpEndpoint: env["OTEL_EXPORTER_OTLP_ENDPOINT"] || undefined,
    logLevel: logLevel as ApiConfig["logLevel"],
    drainMs: readInt(env, "DRAIN_MS", 10_000, 0, 600_000),
    authCacheMs: readInt(env, "AUTH_CACHE_MS", 10_000, 0, 3_600_000),
    metricsPort: readOptionalPort(env, "METRICS_PORT"),
    healthProbeMs: readInt(env, "HEALTH_PROBE_MS", 1_000, 0, 60_000),
    slaFlushMs: readInt(env, "SLA_FLUSH_MS", 10_000, 0, 600_000),
    corsOrigins: parseCorsOrigins(env["CORS_ALLOWED_ORIGINS"]),
  };
}

/** readOptionalPort reads a port that may be turned off: unset, "" or "off" is undefined; 0 asks for any free port. */
export function readOptionalPort(env: Env, name: string): number | undefined {
  const raw = env[name];
  if (raw === undefined || raw === "" || raw === "off") return undefined;
  return readInt(env, name, 0, 0, 65535);
}

/** checkDatabaseUrl returns the value of setting `name` if it is a MySQL URL, or explains what is wrong. */
export function checkDatabaseUrl(name: string, url: string): string {
  if (!/^mysql:\/\/[^/]+\/[A-Za-z0-9_]+(\?.*)?$/.test(url)) {
    throw new Error(`${name} must look like mysql://user:password@host:3306/database, not "${url}"`);
  }
  return url;
}

/** readInt reads an integer setting within bounds, or explains what is wrong. */
export function readInt(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new Error(`${name} must be an integer from ${min} to ${max}, not "${raw}"`);
  }
  return value;
}

/** parseCorsOrigins reads CORS_ALLOWED_ORIGINS: "*" or comma-separated origins such as https://admin.example.com. */
export function parseCorsOrigins(raw: string | undefined): string[] {
  if (raw === undefined || raw.trim() === "") return [];
  const origins = raw
    .split(",")
    .map((o) => o.trim())
    .filter(Boolean);
  for (const o of origins) {
    if (o === "*") continue;
    let url: URL | undefined;
    try {
      url = new URL(o);
    } catch {
      // reported below
    }
    if (!url || (url.protocol !== "http:" && url.protocol !== "https:") || url.origin !== o) {
      throw new Error(`CORS_ALLOWED_ORIGINS: "${o}" is not an origin (scheme://host[:port], no path or trailing slash), nor "*"`);
    }
  }
  return origins;
}
