// Every call throws a typed error: match on the class, read the details.
// STOCKROOM_API_KEY=srk_... node errors.mjs
import { createStockroomClient, NotFoundError, PermissionError, StockroomError, ValidationError } from "@stockroom/sdk";

const baseUrl = process.env.STOCKROOM_URL ?? "http://127.0.0.1:8080";
const stockroom = createStockroomClient({ baseUrl, apiKey: process.env.STOCKROOM_API_KEY });

try {
  await stockroom.catalog.createProduct({ product: { sku: "", title: "", price: { currencyCode: "XXX", minorUnits: -5n } } });
} catch (error) {
  if (!(error instanceof ValidationError)) throw error;
  for (const v of error.fieldViolations) console.log(`invalid ${v.field}: ${v.description}`);
}

try {
  await stockroom.catalog.getProduct({ sku: "NO-SUCH-SKU" });
} catch (error) {
  if (!(error instanceof NotFoundError)) throw error;
  console.log(`not found: ${error.resourceType} ${error.resourceName}`);
}

const stranger = createStockroomClient({ baseUrl, apiKey: "srk_not_a_real_key" });
try {
  await stranger.catalog.getProduct({ sku: "ANY" });
} catch (error) {
  if (!(error instanceof PermissionError)) throw error;
  console.log(`refused (${error.unauthenticated ? "unauthenticated" : "permission denied"}): ${error.cause.rawMessage}`);
}

// The base class carries the gRPC code, the ErrorInfo reason and the raw ConnectError.
try {
  await stockroom.bulk.getBulkJob({ jobId: "not-a-job-id" });
} catch (error) {
  if (!(error instanceof StockroomError)) throw error;
  console.log(`${error.name}: code ${error.code}, reason ${error.reason || "-"}, from the server: ${error.fromServer}`);
}
stockroom.close();
stranger.close();
