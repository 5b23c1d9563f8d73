#!/usr/bin/env bash
# Groundwork for running the test suite on real Vitess (issue 12), not wired
# into npm test yet. Builds vttestserver, mysqlctl and vtcombo from the Go
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
# Usage: tools/vitess/vttestserver.sh [port]   (default 33574; Ctrl-C stops)
set -euo pipefail
VERSION=v0.24.4
PORT=${1:-33574}
root=$(cd "$(dirname "$0")/../.." && pwd)
cache=$root/.stockroom/vitess
bin=$cache/bin
command -v go >/dev/null || { echo "vitess: Go is needed to build Vitess (apt-get install golang, or Go 1.26 from go.dev)"; exit 1; }
if [ ! -x "$bin/vttestserver" ] || [ ! -x "$bin/mysqlctl" ] || [ ! -x "$bin/vtcombo" ]; then
  echo "vitess: building vttestserver, mysqlctl and vtcombo $VERSION into $bin (a few minutes the first time)…"
  mod=$cache/build && rm -rf "$mod" && mkdir -p "$mod" "$bin"
  (cd "$mod" && go mod init stockroom.local/vitess-build >/dev/null 2>&1 &&
    go get vitess.io/vitess/go/cmd/vttestserver@$VERSION vitess.io/vitess/go/cmd/mysqlctl@$VERSION vitess.io/vitess/go/cmd/vtcombo@$VERSION &&
    go build -o "$bin/" vitess.io/vitess/go/cmd/vttestserver vitess.io/vitess/go/cmd/mysqlctl vitess.io/vitess/go/cmd/vtcombo)
fi
src=$(go env GOMODCACHE)/vitess.io/vitess@$VERSION
if [ ! -d "$cache/config" ]; then
  cp -r "$src/config" "$cache/config" && chmod -R u+w "$cache/config"
  sed -i 's/^plugin-load = rpl_semi_sync_master=semisync_master.so;rpl_semi_sync_slave=semisync_slave.so/# MariaDB 10.3+ has semi-sync built in/' "$cache/config/mycnf/mariadb10.cnf"
  sed -i 's/^super-read-only = false/loose-super-read-only = false/' "$cache/config/mycnf/test-suite.cnf"
  sed -i -E 's/^(SET (@original_super_read_only|GLOBAL super_read_only).*)$/-- MariaDB has no super_read_only: \1/' "$cache/config/init_db.sql"
fi
data=$cache/data-$PORT
rm -rf "$data" && mkdir -p "$data"
# vtcombo applies <schema-dir>/<keyspace>/vschema.json to each keyspace at start.
KEYSPACES=stockroom,stockroom_search
NUM_SHARDS=2,1
mkdir -p "$data/schema/stockroom" "$data/schema/stockroom_search"
cp "$root/nomad/vitess/vschema.json" "$data/schema/stockroom/vschema.json"
cp "$root/nomad/vitess/search-vschema.json" "$data/schema/stockroom_search/vschema.json"
user=${VITESS_USER:-mysql}
chown -R "$user" "$data"
chmod o+rx "$root/.stockroom" "$cache" "$bin" 2>/dev/null || true
echo "vitess: starting keyspaces stockroom (-80, 80-) and stockroom_search (0) with their VSchemas; vtgate MySQL protocol on 127.0.0.1:$((PORT + 3))"
exec runuser -u "$user" -- env VTDATAROOT="$data" VTROOT="$cache" PATH="$bin:/usr/sbin:/usr/bin:/bin" \
  "$bin/vttestserver" --port "$PORT" --mysql-bind-host 127.0.0.1 --keyspaces "$KEYSPACES" --num-shards "$NUM_SHARDS" \
  --schema-dir "$data/schema" --data-dir "$data"
