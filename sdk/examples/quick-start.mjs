// The five-line quick start: create a product, read it back.
// STOCKROOM_API_KEY=srk_... node quick-start.mjs
import { createStockroomClient } from "@stockroom/sdk";

const stockroom = createStockroomClient({
  baseUrl: process.env.STOCKROOM_URL ?? "http://127.0.0.1:8080",
  apiKey: process.env.STOCKROOM_API_KEY,
});
const sku = `MUG-${Date.now()}`;
await stockroom.catalog.createProduct({ product: { sku, title: "Mug", price: { currencyCode: "EUR", minorUnits: 1290n }, stock: 5 } });
const { product } = await stockroom.catalog.getProduct({ sku });
console.log(`${product.sku}: ${product.title}, ${product.stock} in stock, etag ${product.etag}`);
stockroom.close();
