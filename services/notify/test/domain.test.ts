import test from "ava";
import type { FieldViolation } from "@stockroom/common";
import { parseNotifyConfig } from "../src/config.ts";
import { isPublicAddress, matchesPatterns, pauseMs, retryDelayMs, validatePatterns, validateWebhookUrl } from "../src/domain.ts";
import { signatureHeader, verifySignature } from "../src/signature.ts";

function urlViolations(url: string, allowPrivate = false): string[] {
  const violations: FieldViolation[] = [];
  validateWebhookUrl("url", url, allowPrivate, violations);
  return violations.map((v) => v.description);
}

test("event type patterns: exact, per kind and everything", (t) => {
  t.true(matchesPatterns(["product.*"], "product.updated"));
  t.false(matchesPatterns(["product.*"], "order.paid"));
  t.false(matchesPatterns(["product.*"], "products.updated"), "a kind is matched up to its dot");
  t.true(matchesPatterns(["order.paid", "bulk_job.finished"], "bulk_job.finished"));
  t.false(matchesPatterns(["order.paid"], "order.created"));
  t.true(matchesPatterns(["*"], "order.expired"));
});

test("unknown event types and kinds are refused, naming the bad entry", (t) => {
  const violations: FieldViolation[] = [];
  validatePatterns("event_types", ["product.*", "prodcut.updated", "stock.*", "order.paid"], violations);
  t.deepEqual(
    violations.map((v) => v.field),
    ["event_types[1]", "event_types[2]"],
  );
  const empty: FieldViolation[] = [];
  validatePatterns("event_types", [], empty);
  t.is(empty.length, 1);
});

test("production refuses loopback, private, link-local and mapped targets; local mode allows them", (t) => {
  for (const url of [
    "http://127.0.0.1:8080/hook",
    "http://localhost/hook",
    "http://10.1.2.3/",
    "http://192.168.0.10/",
    "http://169.254.169.254/latest/meta-data",
    "http://[::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://2130706433/",
    "http://metadata/",
  ]) {
    t.true(
      urlViolations(url).some((d) => d.includes("public internet address")),
      url,
    );
    t.deepEqual(urlViolations(url, true), [], `${url} with private targets allowed`);
  }
  t.deepEqual(urlViolations("https://hooks.example.com/stockroom?x=1"), []);
  t.deepEqual(urlViolations("http://93.184.216.34/hook"), []);
});

test("only absolute http(s) URLs without credentials are accepted", (t) => {
  t.truthy(urlViolations("ftp://example.com/").length);
  t.truthy(urlViolations("/relative").length);
  t.truthy(urlViolations("https://user:pass@example.com/").length);
  t.truthy(urlViolations("").length);
  t.truthy(urlViolations(`https://example.com/${"x".repeat(2100)}`).length);
  t.false(isPublicAddress("not-an-ip"));
  t.true(isPublicAddress("2606:4700::1111"));
  t.false(isPublicAddress("fd00::1"));
});

test("retry backoff: exponential cap with full jitter, never above the maximum", (t) => {
  t.is(
    retryDelayMs(1, 1000, 3_600_000, () => 0.999_999),
    999,
  );
  t.is(
    retryDelayMs(4, 1000, 3_600_000, () => 0.999_999),
    7999,
  );
  t.is(
    retryDelayMs(3, 1000, 3_600_000, () => 0),
    0,
  );
  t.is(
    retryDelayMs(40, 1000, 3_600_000, () => 0.5),
    1_800_000,
  );
  for (let attempt = 1; attempt < 100; attempt++) t.true(retryDelayMs(attempt, 1000, 3_600_000) < 3_600_000);
});

test("an endpoint is paused only after enough failures in a row, then for longer each time", (t) => {
  const circuit = { afterFailures: 5, minMs: 1000, maxMs: 600_000 };
  t.is(pauseMs(4, circuit), undefined);
  t.is(
    pauseMs(5, circuit, () => 1),
    1000,
  );
  t.is(
    pauseMs(7, circuit, () => 1),
    4000,
  );
  t.is(
    pauseMs(50, circuit, () => 1),
    600_000,
  );
  t.is(
    pauseMs(50, circuit, () => 0),
    300_000,
  );
});

test("signatures verify with the right secret and body only, within the tolerance", (t) => {
  const body = '{"id":"01J","type":"product.updated"}';
  const now = 1_800_000_000;
  const header = signatureHeader(body, ["whsec_new", "whsec_old"], now);
  t.regex(header, /^t=1800000000,v1=[0-9a-f]{64},v1=[0-9a-f]{64}$/);
  t.true(verifySignature(header, body, "whsec_new", { now }));
  t.true(verifySignature(header, body, "whsec_old", { now }), "either secret of a rotation verifies");
  t.false(verifySignature(header, body, "whsec_other", { now }));
  t.false(verifySignature(header, `${body} `, "whsec_new", { now }));
  t.false(verifySignature(header, body, "whsec_new", { now: now + 301 }), "a replay after five minutes is refused");
  t.false(verifySignature("v1=abc", body, "whsec_new", { now }));
});

test("settings: private targets are off unless asked for, and bad values are explained", (t) => {
  t.false(parseNotifyConfig({}).allowPrivateTargets);
  t.true(parseNotifyConfig({ WEBHOOK_ALLOW_PRIVATE_TARGETS: "true" }).allowPrivateTargets);
  t.throws(() => parseNotifyConfig({ WEBHOOK_ALLOW_PRIVATE_TARGETS: "yes" }), { message: /true or false/ });
  t.throws(() => parseNotifyConfig({ WEBHOOK_RETRY_MIN_MS: "5000", WEBHOOK_RETRY_MAX_MS: "1000" }), { message: /must not be below/ });
  t.is(parseNotifyConfig({ WEBHOOK_MAX_AGE_MS: "60000" }).dispatcher.maxAgeMs, 60_000);
});
