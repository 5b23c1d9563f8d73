import test from "ava";
import { RateLimitedError } from "../src/errors.ts";
import { createRateLimiter } from "../src/rpc/rate-limit.ts";

test("createRateLimiter refills at the rate up to the burst, per key", (t) => {
  let now = 0;
  const limiter = createRateLimiter({ ratePerSec: 10, burst: 2 }, { now: () => now });
  limiter.take("a");
  limiter.take("a");
  const e = t.throws(() => limiter.take("a"), { instanceOf: RateLimitedError });
  t.is(e.retryAfterMs, 100);
  t.notThrows(() => limiter.take("b"), "other keys are untouched");
  now = 100;
  t.notThrows(() => limiter.take("a"), "one token refilled after 100 ms");
  t.throws(() => limiter.take("a"));
  now = 10_000;
  limiter.take("a");
  limiter.take("a");
  t.throws(() => limiter.take("a"), undefined, "refills stop at the burst");
  const unlimited = createRateLimiter({ ratePerSec: 0, burst: 0 });
  for (let i = 0; i < 1000; i++) unlimited.take("a");
  t.pass();
});

test("createRateLimiter forgets the least recently used key beyond maxKeys", (t) => {
  const limiter = createRateLimiter({ ratePerSec: 1, burst: 1 }, { maxKeys: 2, now: () => 0 });
  limiter.take("a");
  limiter.take("b");
  limiter.take("c"); // evicts "a"
  t.notThrows(() => limiter.take("a"), "a forgotten key starts with a full burst");
  t.throws(() => limiter.take("c"), { instanceOf: RateLimitedError });
});
