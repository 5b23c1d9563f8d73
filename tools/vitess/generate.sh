#!/usr/bin/env bash
# Regenerates services/events/src/gen/vitess (vtgate's VStream API) from the
# .proto files of the Go module vitess.io/vitess at the version vttestserver.sh
# pins: downloads the module if the Go module cache lacks it, copies its
# proto/ folder into a scratch buf module and runs buf with
# tools/vitess/buf.gen.yaml on vtgateservice.proto and its imports only.
# Usage: tools/vitess/generate.sh   (npm run generate:vitess)
set -euo pipefail
VERSION=v0.24.4
root=$(cd "$(dirname "$0")/../.." && pwd)
command -v go >/dev/null || { echo "vitess protos: Go is needed to fetch vitess.io/vitess@$VERSION (apt-get install golang)"; exit 1; }
src=$(go env GOMODCACHE)/vitess.io/vitess@$VERSION/proto
if [ ! -f "$src/vtgateservice.proto" ]; then
  src=$(cd "$(mktemp -d)" && go mod download -json vitess.io/vitess@$VERSION | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')/proto
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$src"/*.proto "$work/"
cp "$root/tools/vitess/buf.yaml" "$work/buf.yaml"
cd "$root"
export PATH="$root/node_modules/.bin:$PATH"
buf generate "$work" --template tools/vitess/buf.gen.yaml --path "$work/vtgateservice.proto"
echo "vitess protos: generated $(find services/events/src/gen/vitess -name '*.js' | wc -l) files from vitess.io/vitess@$VERSION into services/events/src/gen/vitess"
