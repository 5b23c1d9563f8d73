/**
 * The SDK's tests run against the real thing: the catalog and bulk APIs on
 * a fresh database with an in-process worker and this file's own JetStream
 * stream (services/bulk/test/harness.ts), called through the SDK.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { startBulkHarness } from "@stockroom/bulk/testing";
import { generateBulkFile } from "../../tools/gen-bulk-file.ts";
import { createStockroomClient, type NodeClientOptions } from "../src/index.ts";

export async function startSdkHarness(name: string, ...bulk: Parameters<typeof startBulkHarness> extends [string, ...infer R] ? R : never) {
  const h = await startBulkHarness(`sdk_${name}`, ...bulk);
  const dir = mkdtempSync(path.join(tmpdir(), `stockroom-sdk-${name}-`));
  const clients: { close(): void }[] = [];
  return {
    ...h,
    dir,
    /** client is an SDK client for merchant A, straight to the API unless baseUrl says otherwise. */
    client(options: Partial<NodeClientOptions> = {}) {
      const c = createStockroomClient({ baseUrl: h.api.url, apiKey: h.api.merchantA.apiKey, ...options });
      clients.push(c);
      return c;
    },
    /** csv makes an all-valid CSV of rows products with SKUs starting with prefix (fixed seed), as bytes and as a file. */
    csv(rows: number, prefix: string) {
      const file = generateBulkFile({ rows, format: "csv", seed: 42, skuPrefix: `${prefix}${h.suffix}-` });
      const bytes = Buffer.concat([...file.chunks]);
      const filePath = path.join(dir, `${prefix}.csv`);
      writeFileSync(filePath, bytes);
      return { bytes, path: filePath, skuPrefix: `${prefix}${h.suffix}-` };
    },
    async close() {
      for (const c of clients) c.close();
      await h.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
