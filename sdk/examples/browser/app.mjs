// The SDK in a browser: a merchant picks a CSV file, it uploads in resumable
// parts with a progress bar, and the page follows the job to the end.
// Bundle it (npx esbuild app.mjs --bundle --format=esm --outfile=app.js) and
// serve index.html and app.js from the API's origin (or one it allows).
import { BulkJobState, createStockroomClient, ConflictError } from "@stockroom/sdk/web";

/** uploadAndFollow uploads a file and reports each step to log; it returns the finished job. */
export async function uploadAndFollow({ baseUrl, apiKey, transport = "connect", file, log = console.log }) {
  const stockroom = createStockroomClient({ baseUrl, apiKey, transport });
  const job = await stockroom.uploadBulkFile(file, {
    onProgress: ({ bytesSent, totalBytes }) => log(`uploaded ${Math.round((100 * bytesSent) / (totalBytes || bytesSent || 1))}%`),
  });
  for await (const { job: now } of stockroom.watchBulkJob(job.id)) log(`${BulkJobState[now.state]}: ${now.counts.applied} applied`);
  const done = await stockroom.waitForBulkJob(job.id);
  const report = await stockroom.downloadBulkJobReport(job.id).text();
  return { job: done, reportLines: report.trimEnd().split("\r\n").length };
}

/** editWithConflict shows the etag round trip: a stale etag is a ConflictError carrying the current one. */
export async function editWithConflict({ baseUrl, apiKey, transport = "connect", sku }) {
  const stockroom = createStockroomClient({ baseUrl, apiKey, transport });
  const { product } = await stockroom.catalog.createProduct({
    product: { sku, title: "Browser mug", price: { currencyCode: "EUR", minorUnits: 990n } },
  });
  await stockroom.catalog.updateProduct({
    product: { sku, title: "Browser mug v2", etag: product.etag },
    updateMask: { paths: ["title"] },
  });
  try {
    await stockroom.catalog.updateProduct({ product: { sku, title: "stale", etag: product.etag }, updateMask: { paths: ["title"] } });
    return { conflict: false };
  } catch (error) {
    return { conflict: error instanceof ConflictError, currentEtag: error.currentEtag, name: error.name };
  }
}

// Wire the demo page, when there is one.
if (typeof document !== "undefined" && document.querySelector("#upload")) {
  const $ = (id) => document.querySelector(id);
  $("#upload").addEventListener("submit", async (event) => {
    event.preventDefault();
    const log = (line) => ($("#log").textContent += `${line}\n`);
    try {
      const { job } = await uploadAndFollow({ baseUrl: location.origin, apiKey: $("#key").value, file: $("#file").files[0], log });
      log(`done: ${BulkJobState[job.state]}`);
    } catch (error) {
      log(`${error.name}: ${error.message}`);
    }
  });
}
globalThis.stockroomDemo = { uploadAndFollow, editWithConflict };
