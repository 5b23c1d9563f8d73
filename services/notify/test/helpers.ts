// The catalog's test helpers the webhook tests use (as orders/test/helpers.ts does).
export { countRows, errorInfo, fieldViolations, productInit, rejection, writeInOneTransaction } from "@stockroom/catalog/testing";
