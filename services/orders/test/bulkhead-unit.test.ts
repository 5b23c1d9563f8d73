import test from "ava";
import { RateLimitedError } from "@stockroom/common";
import { createBulkhead } from "../src/bulkhead.ts";

test("a call whose turn is not expected within waitMs is refused at once, with the time its turn would come as the retry delay", async (t) => {
  let now = 0;
  const bulkhead = createBulkhead({ perMerchant: 2, total: 0, waitingPerSku: 0, waitMs: 40, queueMs: 0 }, () => now);
  // Transactions of 100 ms: a place frees every 50 ms.
  for (let i = 0; i < 300; i++) {
    const release = bulkhead.tryEnter("m")!;
    now += 100;
    release();
  }
  const held = [bulkhead.tryEnter("m")!, bulkhead.tryEnter("m")!];
  t.is(bulkhead.tryEnter("m"), undefined);
  const error = await t.throwsAsync(bulkhead.enter("m"), { instanceOf: RateLimitedError });
  t.true(error!.retryAfterMs >= 49 && error!.retryAfterMs <= 51, `retry in ${error!.retryAfterMs} ms`);
  // Another merchant has its own places.
  t.truthy(bulkhead.tryEnter("other"));
  // A released place goes to the next caller.
  held[0]!();
  t.truthy(await bulkhead.enter("m"));
});

test("the process-wide cap refuses every merchant once reached", async (t) => {
  const bulkhead = createBulkhead({ perMerchant: 0, total: 2, waitingPerSku: 0, waitMs: 40, queueMs: 0 });
  const a = bulkhead.tryEnter("a")!;
  t.truthy(bulkhead.tryEnter("b"));
  await t.throwsAsync(bulkhead.enter("c"), { instanceOf: RateLimitedError, message: /its limit/ });
  a();
  t.truthy(await bulkhead.enter("c"));
});
