/**
 * `npm run bench:migration`: issue 17's expand migration on a
 * 1,000,000-product table under a load of product updates (the scenario is
 * services/catalog/test/expand-migration.ts, which the online-migration test
 * also runs for what the migration does to the table). Targets: the
 * migration takes at most 1 s, and the updates' p99 while it runs stays
 * within 2× their p99 before it, measured in the same round.
 *
 * BENCH_ROUNDS (default 3) repeats the scenario, each on a fresh database;
 * BENCH_CALLS (default 300) sets the updates measured before, during and
 * after. Each round takes about 20 s, most of it filling the table.
 */
import { readInt } from "@stockroom/common";
import { runExpandMigration } from "@stockroom/catalog/testing/expand-migration";
import { median, round, table, writeResults } from "./stats.ts";

const ROUNDS = readInt(process.env, "BENCH_ROUNDS", 3, 1, 20);
const CALLS = readInt(process.env, "BENCH_CALLS", 300, 50, 100_000);
const MIGRATION_TARGET_MS = 1_000;
const P99_RATIO_TARGET = 2;

const rounds = [];
for (let i = 1; i <= ROUNDS; i++) {
  const { algorithm, figures } = await runExpandMigration("bench_migration", CALLS);
  rounds.push({ round: i, algorithm, ...figures, p99DuringOverBefore: round(figures.p99DuringMs / figures.p99BeforeMs, 2) });
  console.log(`round ${i} of ${ROUNDS}: migration ${figures.migrationMs} ms (${algorithm})`);
}

console.log(
  `\nexpand migration on 1,000,000 products, ${CALLS} port-shaped updates (4 in flight) before, during and after\n${table(
    ["round", "algorithm", "migration ms", "ALTERs ms", "p99 before", "p99 during", "during/before", "p99 after", "RPC p99 after"],
    rounds.map((r) => [
      r.round,
      r.algorithm,
      r.migrationMs,
      r.alterStatementsMs.join(" "),
      r.p99BeforeMs,
      r.p99DuringMs,
      `${r.p99DuringOverBefore}x`,
      r.p99AfterMs,
      r.rpcP99AfterMs,
    ]),
  )}`,
);
const summary = {
  migrationMsMedian: round(median(rounds.map((r) => r.migrationMs)), 1),
  p99DuringOverBeforeMedian: round(median(rounds.map((r) => r.p99DuringOverBefore)), 2),
};
const verdict = {
  migrationWithinTarget: summary.migrationMsMedian <= MIGRATION_TARGET_MS,
  p99WithinTarget: summary.p99DuringOverBeforeMedian <= P99_RATIO_TARGET,
};
console.log(
  `\nmedian of ${ROUNDS}: migration ${summary.migrationMsMedian} ms (target ≤ ${MIGRATION_TARGET_MS}: ${verdict.migrationWithinTarget ? "met" : "missed"}), ` +
    `p99 during/before ${summary.p99DuringOverBeforeMedian}x (target ≤ ${P99_RATIO_TARGET}x: ${verdict.p99WithinTarget ? "met" : "missed"})`,
);
console.log(`wrote ${writeResults("migration", { calls: CALLS, rounds, summary, verdict })}`);
