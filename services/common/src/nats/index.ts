export * from "./jetstream.ts";
