#!/usr/bin/env bash
# Start-up cost of the exec provider, measured: the whole `ocikp keyprovider`
# process (one unwrap, one wrap) against a minimal Go binary that decodes and
# encodes the same JSON, interleaved in one run. Also prints ocikp's package
# initialisation (GODEBUG=inittrace=1) and the in-process Go benchmarks.
#
# Key types (TYPES, comma-separated) are timed in the same interleaved run:
# P-256 and the post-quantum ones by default. Each type's unwrap is followed
# by the same unwrap through ocikp-unwrap (the node's exec binary, which
# answers it itself) and by its cryptographic floor (internal/cmd/kemfloor:
# the same JSON plus only that key type's private-key work).
#
#   RUNS=500 KEYS=3 TYPES=p256,mlkem768x25519,mlkem768p256 scripts/bench-exec.sh
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
CGO_ENABLED=0 go build -o "$out/" ./cmd/ocikp ./cmd/ocikp-unwrap
go build -o "$out/jsonecho" ./internal/cmd/jsonecho
go build -o "$out/execbench" ./internal/cmd/execbench
go build -o "$out/kemfloor" ./internal/cmd/kemfloor

echo "== whole process"
"$out/execbench" -ocikp "$out/ocikp" -baseline "$out/jsonecho" -unwrap "$out/ocikp-unwrap" -floor "$out/kemfloor" -runs "${RUNS:-500}" -keys "${KEYS:-3}" -types "${TYPES:-p256,mlkem768x25519,mlkem768p256}"

echo
echo "== package initialisation of ocikp (sum of GODEBUG=inittrace=1 clock times)"
GODEBUG=inittrace=1 "$out/ocikp" version 2>&1 >/dev/null | awk '{n++; s+=$5} END {printf "%d packages, %.3f ms\n", n, s}'

echo
echo "== in-process (go test -bench)"
go test -run '^$' -bench . -benchmem ./keyprovider ./pq | grep -E '^Benchmark'
