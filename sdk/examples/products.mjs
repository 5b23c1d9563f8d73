// Conditional updates: send the etag you read; if someone else changed the
// product meanwhile, the update fails with a ConflictError carrying the
// current etag, and you decide how to merge.
// STOCKROOM_API_KEY=srk_... node products.mjs
import { ConflictError, createStockroomClient } from "@stockroom/sdk";

const stockroom = createStockroomClient({
  baseUrl: process.env.STOCKROOM_URL ?? "http://127.0.0.1:8080",
  apiKey: process.env.STOCKROOM_API_KEY,
});
const sku = `LAMP-${Date.now()}`;
const { product: created } = await stockroom.catalog.createProduct({
  product: { sku, title: "Desk lamp", price: { currencyCode: "EUR", minorUnits: 3900n }, stock: 10 },
});

// Another editor changes the title first.
await stockroom.catalog.updateProduct({
  product: { sku, title: "Desk lamp, brass", etag: created.etag },
  updateMask: { paths: ["title"] },
});

// Our update still carries the etag we read: it is refused, nothing is written.
try {
  await stockroom.catalog.updateProduct({
    product: { sku, price: { currencyCode: "EUR", minorUnits: 3500n }, etag: created.etag },
    updateMask: { paths: ["price"] },
  });
} catch (error) {
  if (!(error instanceof ConflictError)) throw error;
  console.log(`conflict: the product is now at ${error.currentEtag}; re-applying the price change on top`);
  const { product } = await stockroom.catalog.updateProduct({
    product: { sku, price: { currencyCode: "EUR", minorUnits: 3500n }, etag: error.currentEtag },
    updateMask: { paths: ["price"] },
  });
  console.log(`${product.title} now costs ${product.price.minorUnits} (version ${product.version})`);
}

// An atomic stock change; the SDK gives it a request_id, so a retry after a dropped connection never applies it twice.
const { product } = await stockroom.catalog.adjustStock({ sku, delta: -2, reason: "sold at the fair" });
console.log(`stock: ${product.stock}`);
stockroom.close();
