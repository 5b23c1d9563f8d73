// Deadlines, retries and idempotency keys.
// STOCKROOM_API_KEY=srk_... node retries.mjs
import { createStockroomClient, newRequestId } from "@stockroom/sdk";

const stockroom = createStockroomClient({
  baseUrl: process.env.STOCKROOM_URL ?? "http://127.0.0.1:8080",
  apiKey: process.env.STOCKROOM_API_KEY,
  transport: "connect", // or "grpc" (default) or "grpc-web"
  timeoutMs: 5_000, // every unary call, retries included
  retry: { maxAttempts: 5, initialDelayMs: 200, maxDelayMs: 3_000 },
});

// Keep your own request_id when the operation may be retried across processes
// (e.g. a job queue): the server answers a repeat with the first response.
const sku = `TEA-${Date.now()}`;
const requestId = newRequestId();
const create = () =>
  stockroom.catalog.createProduct({ requestId, product: { sku, title: "Tea", price: { currencyCode: "EUR", minorUnits: 450n } } });
const first = await create();
const repeat = await create();
console.log(`created once: ${first.product.etag === repeat.product.etag}`);

// One slow call may get more time than the default.
const { products } = await stockroom.catalog.listProducts({ pageSize: 10 }, { timeoutMs: 30_000 });
console.log(`${products.length} products on the first page`);
stockroom.close();
