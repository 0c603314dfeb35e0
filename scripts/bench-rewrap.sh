#!/usr/bin/env bash
# ocikp rewrap --add against skopeo decrypting, re-encrypting and pushing the
# whole image, on a real local registry through a counting proxy: wall time
# and bytes sent and received by each (issue target: >= 100x less time,
# >= 1000x fewer bytes sent).
#
#   SIZE=1073741824 LAYERS=10 scripts/bench-rewrap.sh
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS_BIN=$(scripts/install-tools.sh skopeo)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
go build -o "$out/" ./cmd/ocikp ./cmd/ocikp-image ./internal/cmd/rewrapbench
"$out/rewrapbench" -ocikp "$out/ocikp" -skopeo "$TOOLS_BIN/skopeo" -size "${SIZE:-1073741824}" -layers "${LAYERS:-10}"
