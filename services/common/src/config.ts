/** ApiConfig is what every API process needs; parseApiConfig is pure over an env map. */
export interface ApiConfig {
  host: string;
  port: number;
  databaseUrl: string;
  dbPoolSize: number;
  /** NATS servers, comma-separated (nats://… or tls://…). */
  natsUrl: string;
  /** How to authenticate to NATS and verify its TLS certificate (NATS_CREDS_FILE, NATS_USER/NATS_PASSWORD, NATS_TLS_*). */
  natsSecurity: NatsSecurity;
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
  /** The dashboard's build, served at `/` (WEB_DIR: a directory; unset = the web workspace's dist; "off" = none). */
  webDir: string | false | undefined;
}

export type Env = Record<string, string | undefined>;

/**
 * NatsSecurity is how a process authenticates to NATS and checks the
 * server's certificate. Files, not values: Nomad templates render them
 * from Nomad variables into the allocation's secrets/ directory.
 */
export interface NatsSecurity {
  /** A .creds file (user JWT and NKey seed), NATS_CREDS_FILE; read again at each (re)connect, so a rotated file is used. */
  credsFile?: string;
  /** User and password (NATS_USER, NATS_PASSWORD), for a server with user authorization. */
  user?: string;
  password?: string;
  /** TLS: required when set (a tls:// URL or any NATS_TLS_* setting); the server's certificate is always verified. */
  tls?: {
    /** CA bundle to verify the server with (NATS_TLS_CA); the system's CAs without it. */
    caFile?: string;
    /** Client certificate and key (NATS_TLS_CERT, NATS_TLS_KEY), for servers that verify clients. */
    certFile?: string;
    keyFile?: string;
  };
}

export const DEFAULT_DATABASE_URL = "mysql://root@127.0.0.1:3306/stockroom";

export function parseApiConfig(env: Env): ApiConfig {
  const logLevel = env["LOG_LEVEL"] ?? "info";
  if (!["info", "warn", "error", "silent"].includes(logLevel)) {
    throw new Error(`LOG_LEVEL must be info, warn, error or silent, not "${logLevel}"`);
  }
  const databaseUrl = checkDatabaseUrl("DATABASE_URL", env["DATABASE_URL"] ?? DEFAULT_DATABASE_URL);
  const natsUrl = env["NATS_URL"] ?? "nats://127.0.0.1:4222";
  return {
    host: env["HOST"] ?? "127.0.0.1",
    port: readInt(env, "PORT", 8080, 0, 65535),
    databaseUrl,
    dbPoolSize: readInt(env, "DB_POOL_SIZE", 20, 1, 1000),
    natsUrl,
    natsSecurity: parseNatsSecurity(env, natsUrl),
    otlpEndpoint: env["OTEL_EXPORTER_OTLP_ENDPOINT"] || undefined,
    logLevel: logLevel as ApiConfig["logLevel"],
    drainMs: readInt(env, "DRAIN_MS", 10_000, 0, 600_000),
    authCacheMs: readInt(env, "AUTH_CACHE_MS", 10_000, 0, 3_600_000),
    metricsPort: readOptionalPort(env, "METRICS_PORT"),
    healthProbeMs: readInt(env, "HEALTH_PROBE_MS", 1_000, 0, 60_000),
    slaFlushMs: readInt(env, "SLA_FLUSH_MS", 10_000, 0, 600_000),
    corsOrigins: parseCorsOrigins(env["CORS_ALLOWED_ORIGINS"]),
    webDir: env["WEB_DIR"] === "off" ? false : env["WEB_DIR"] || undefined,
  };
}

/** parseNatsSecurity reads NATS credentials and TLS settings, refusing combinations that cannot work. */
export function parseNatsSecurity(env: Env, natsUrl: string): NatsSecurity {
  const value = (raw: string | undefined) => (raw === "" ? undefined : raw);
  const [credsFile, user, password] = [value(env["NATS_CREDS_FILE"]), value(env["NATS_USER"]), value(env["NATS_PASSWORD"])];
  const [caFile, certFile, keyFile] = [value(env["NATS_TLS_CA"]), value(env["NATS_TLS_CERT"]), value(env["NATS_TLS_KEY"])];
  if (credsFile && (user || password)) throw new Error("NATS_CREDS_FILE and NATS_USER/NATS_PASSWORD exclude each other: set one");
  if ((user === undefined) !== (password === undefined)) throw new Error("NATS_USER and NATS_PASSWORD go together");
  if ((certFile === undefined) !== (keyFile === undefined)) throw new Error("NATS_TLS_CERT and NATS_TLS_KEY go together");
  const servers = natsUrl.split(",").map((s) => s.trim());
  const schemes = new Set(servers.map((s) => /^([a-z]+):\/\//i.exec(s)?.[1]?.toLowerCase() ?? "nats"));
  for (const scheme of schemes) {
    if (!["nats", "tls"].includes(scheme)) throw new Error(`NATS_URL: "${scheme}://" is not nats:// or tls://`);
  }
  if (schemes.size > 1) throw new Error("NATS_URL mixes nats:// and tls:// servers");
  const tls = schemes.has("tls") || caFile !== undefined || certFile !== undefined;
  return {
    ...(credsFile !== undefined && { credsFile }),
    ...(user !== undefined && { user, password }),
    ...(tls && {
      tls: { ...(caFile !== undefined && { caFile }), ...(certFile !== undefined && { certFile, keyFile }) },
    }),
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
