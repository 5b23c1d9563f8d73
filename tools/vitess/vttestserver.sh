#!/usr/bin/env bash
# A local Vitess cluster: npm test's Vitess tier (tools/test.ts runs it with
# --test-pool), or `npm start` on Vitess (README, Running on Vitess). Builds
# vttestserver, mysqlctl and vtcombo from the Go
# module vitess.io/vitess at a pinned version into .stockroom/vitess (git-
# ignored, reused when present) and starts a local cluster on this machine's
# MariaDB binaries: keyspace `stockroom` in 2 shards (-80, 80-) and
# `stockroom_search` in 1 (shard 0), each with its VSchema from nomad/vitess/
# (the shards nomad/vitess-tablets.nomad.hcl runs; deploy-config.test.ts checks
# they agree), vtgate's MySQL protocol on 127.0.0.1:$((PORT + 3)).
#
# What it takes on Debian 12 with MariaDB 10.11 (Vitess 24 still accepts
# MariaDB; production targets MySQL 8.0/8.4):
# - `go install vitess.io/vitess/go/cmd/vttestserver@v0.24.4` is refused (the
#   module's go.mod has exclude directives), so a throwaway module requires
#   vitess and builds the three commands (about 3 min the first time).
# - mysqlctl refuses to run as root: the cluster runs as the `mysql` user.
# - Vitess's MariaDB my.cnf loads semisync_master.so, which MariaDB 10.3+
#   builds in, and its test-suite.cnf and init_db.sql set super_read_only,
#   which MariaDB lacks: a copy of Vitess's config/ is patched for that.
#
# --test-pool N starts the keyspaces of npm test's Vitess tier instead
# (tools/test.ts): stockroom_t01 … stockroom_tNN, 2 shards each, each with the
# stockroom VSchema and the search VSchema merged (a test file takes one whole
# keyspace for its catalog database and another for its search database; see
# testDatabaseUrl in services/common/testing), one tablet per shard, and
# vtgate in transaction mode SINGLE, so a transaction that would span shards
# fails instead of committing non-atomically.
# Usage: tools/vitess/vttestserver.sh [port] [--test-pool N]   (default 23574; Ctrl-C stops)
set -euo pipefail
VERSION=v0.24.4
PORT=23574
POOL=0
while [ $# -gt 0 ]; do
  case $1 in
    --test-pool) POOL=$2; shift 2 ;;
    [0-9]*) PORT=$1; shift ;;
    *) echo "usage: $0 [port] [--test-pool N]"; exit 2 ;;
  esac
done
root=$(cd "$(dirname "$0")/../.." && pwd)
cache=$root/.stockroom/vitess
bin=$cache/bin
need_go() { command -v go >/dev/null || { echo "vitess: Go is needed to build Vitess $VERSION into $bin: install Go ≥ 1.24 (Go 1.26 from https://go.dev/dl/, or apt-get install golang-go where it is that recent)"; exit 1; }; }
if [ ! -x "$bin/vttestserver" ] || [ ! -x "$bin/mysqlctl" ] || [ ! -x "$bin/vtcombo" ]; then
  need_go
  echo "vitess: building vttestserver, mysqlctl and vtcombo $VERSION into $bin (a few minutes the first time)…"
  mod=$cache/build && rm -rf "$mod" && mkdir -p "$mod" "$bin"
  (cd "$mod" && go mod init stockroom.local/vitess-build >/dev/null 2>&1 &&
    go get vitess.io/vitess/go/cmd/vttestserver@$VERSION vitess.io/vitess/go/cmd/mysqlctl@$VERSION vitess.io/vitess/go/cmd/vtcombo@$VERSION &&
    go build -o "$bin/" vitess.io/vitess/go/cmd/vttestserver vitess.io/vitess/go/cmd/mysqlctl vitess.io/vitess/go/cmd/vtcombo)
fi
if [ ! -d "$cache/config" ]; then
  need_go
  src=$(go env GOMODCACHE)/vitess.io/vitess@$VERSION
  cp -r "$src/config" "$cache/config" && chmod -R u+w "$cache/config"
  sed -i 's/^plugin-load = rpl_semi_sync_master=semisync_master.so;rpl_semi_sync_slave=semisync_slave.so/# MariaDB 10.3+ has semi-sync built in/' "$cache/config/mycnf/mariadb10.cnf"
  sed -i 's/^super-read-only = false/loose-super-read-only = false/' "$cache/config/mycnf/test-suite.cnf"
  sed -i -E 's/^(SET (@original_super_read_only|GLOBAL super_read_only).*)$/-- MariaDB has no super_read_only: \1/' "$cache/config/init_db.sql"
fi
# utf8mb4 on the server as on every connection (an extra my.cnf, read after Vitess's own, which says utf8:
# utf8mb3, under which the tablets' connections carried 4-byte characters, an emoji in a product title, as
# invalid utf8mb3, errno 1366).
printf '[mysqld]\ncharacter_set_server = utf8mb4\ncollation_server = utf8mb4_general_ci\n' > "$cache/utf8mb4.cnf"
chmod o+r "$cache/utf8mb4.cnf"
data=$cache/data-$PORT
rm -rf "$data" && mkdir -p "$data"
# vtcombo applies <schema-dir>/<keyspace>/vschema.json to each keyspace at start.
# The production keyspaces (nomad/vitess-tablets.nomad.hcl runs the same shards; deploy-config.test.ts checks).
KEYSPACES=stockroom,stockroom_search
NUM_SHARDS=2,1
extra=()
if [ "$POOL" -gt 0 ]; then
  KEYSPACES="" NUM_SHARDS=""
  # The project's pinned Node (npm ci), else whatever node is on PATH (any version parses JSON).
  node_bin=$root/node_modules/.bin/node
  [ -x "$node_bin" ] || node_bin=node
  merged=$("$node_bin" -e 'const [a, b] = process.argv.slice(1).map((f) => JSON.parse(require("fs").readFileSync(f, "utf8")));
    console.log(JSON.stringify({ ...a, tables: { ...a.tables, ...b.tables } }, null, 2))' "$root/nomad/vitess/vschema.json" "$root/nomad/vitess/search-vschema.json")
  for i in $(seq 1 "$POOL"); do
    ks=stockroom_t$(printf '%02d' "$i")
    KEYSPACES+="${KEYSPACES:+,}$ks" NUM_SHARDS+="${NUM_SHARDS:+,}2"
    mkdir -p "$data/schema/$ks" && printf '%s\n' "$merged" >"$data/schema/$ks/vschema.json"
  done
  extra=(--replica-count 1 --rdonly-count 0 --transaction-mode SINGLE)
  what="$POOL test keyspaces stockroom_t01… (-80, 80-)"
else
  mkdir -p "$data/schema/stockroom" "$data/schema/stockroom_search"
  cp "$root/nomad/vitess/vschema.json" "$data/schema/stockroom/vschema.json"
  cp "$root/nomad/vitess/search-vschema.json" "$data/schema/stockroom_search/vschema.json"
  what="keyspaces stockroom (-80, 80-) and stockroom_search (0) with their VSchemas"
fi
user=${VITESS_USER:-mysql}
[ "$(id -u)" = 0 ] && chown -R "$user" "$data"
chmod o+rx "$root/.stockroom" "$cache" "$bin" 2>/dev/null || true
echo "vitess: starting $what; vtgate MySQL protocol on 127.0.0.1:$((PORT + 3))"
# mysqlctl refuses to run as root: root runs the cluster as $user, anyone else as themselves.
as_user=(runuser -u "$user" --)
[ "$(id -u)" = 0 ] || as_user=()
exec "${as_user[@]}" env VTDATAROOT="$data" VTROOT="$cache" PATH="$bin:/usr/sbin:/usr/bin:/bin" \
  "$bin/vttestserver" --port "$PORT" --mysql-bind-host 127.0.0.1 --keyspaces "$KEYSPACES" --num-shards "$NUM_SHARDS" \
  --schema-dir "$data/schema" --data-dir "$data" --extra-my-cnf "$cache/utf8mb4.cnf" "${extra[@]}"
