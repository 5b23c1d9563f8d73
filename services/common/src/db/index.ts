export * from "./database.ts";
export * from "./deferred-writes.ts";
export * from "./grants.ts";
export * from "./schema.ts";
export * from "./shards.ts";
