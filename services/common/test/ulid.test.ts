/** newUlid: canonical, in creation order within a millisecond, and random parts that never repeat across the random pool's refills. */
import test from "ava";
import { newUlid, ulidFloor, ULID_PATTERN } from "../src/ulid.ts";

test("ids of distinct milliseconds draw fresh random parts, across many refills of the pool", (t) => {
  const start = Date.UTC(2026, 11, 4);
  const randoms = new Set<string>();
  // 409 ids per 4,096-byte pool: this spans about 25 refills.
  for (let i = 0; i < 10_000; i++) {
    const id = newUlid(start + i);
    t.true(ULID_PATTERN.test(id), id);
    t.true(id >= ulidFloor(start + i) && id < ulidFloor(start + i + 1), id);
    randoms.add(id.slice(10));
  }
  t.is(randoms.size, 10_000);
});

test("ids of one millisecond sort in the order they were made, and a later millisecond sorts after", (t) => {
  const ms = Date.UTC(2027, 0, 1);
  const ids = Array.from({ length: 1_000 }, () => newUlid(ms));
  t.deepEqual([...ids].sort(), ids);
  t.is(new Set(ids).size, ids.length);
  t.true(newUlid(ms + 1) > ids.at(-1)!);
});
