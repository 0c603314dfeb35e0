#!/usr/bin/env bash
# What the KMS plugin design costs, measured against a fake Cloud KMS on
# loopback: software-key unwraps with and without ocikp-plugin-gcpkms installed
# (must be equal), and a KMS unwrap through ocikp against a bare SDK call in
# its own process (target: at most 1.1x plus one ocikp process start).
#
#   RUNS=200 scripts/bench-kms.sh
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
CGO_ENABLED=0 go build -o "$out/ocikp" ./cmd/ocikp
go build -o "$out/ocikp-plugin-gcpkms" ./cmd/ocikp-plugin-gcpkms
go build -o "$out/kmsbench" ./internal/cmd/kmsbench
"$out/kmsbench" -ocikp "$out/ocikp" -runs "${RUNS:-200}"
