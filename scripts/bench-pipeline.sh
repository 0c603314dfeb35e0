#!/usr/bin/env bash
# The whole pipeline: skopeo encrypting an image of LAYERS random layers of
# SIZE bytes on a local registry and decrypting it into an OCI layout, with
# the layer keys wrapped by ocikp (exec, through ocikp and ocikp-unwrap;
# gRPC service) against ocicrypt's
# in-process JWE (RSA-2048, EC P-256), and the floor of an exec provider
# (internal/cmd/kpfloor), all interleaved round by round (issue target:
# ocikp <= 1.0x in-process JWE).
#
#   RUNS=7 LAYERS=5 SIZE=20971520 scripts/bench-pipeline.sh
#   VARIANTS=jwe-rsa,ocikp BASELINE=jwe-rsa scripts/bench-pipeline.sh
#   STRACE=1 scripts/bench-pipeline.sh      # also count provider processes
#   PROCS=200 scripts/bench-pipeline.sh     # also time each exec provider alone
#
# Besides the table it prints one machine-readable line per variant and step:
#   BENCH pipeline variant=V step=total|encrypt|decrypt runs=N median_s=S p90_s=S ratio=R paired=R cpu_s=S cpu_ratio=R baseline=B
# (ratio: median / the baseline's median; paired: median over rounds of the
# variant's time / the baseline's in the same round; p90 by nearest rank;
# cpu: user+system time of skopeo and the programs it ran), and with STRACE=1
#   BENCH pipeline-trace variant=V step=S processes=N proc_sum_ms=MS proc_max_ms=MS proc_union_ms=MS wall_s=S
# and with PROCS=N
#   BENCH pipeline-proc variant=V op=wrap|unwrap runs=N median_ms=MS p90_ms=MS
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS_BIN=$(scripts/install-tools.sh skopeo)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
CGO_ENABLED=0 go build -o "$out/" ./cmd/ocikp ./cmd/ocikp-unwrap
go build -o "$out/" ./cmd/ocikp-serve ./internal/cmd/kpfloor ./internal/cmd/pipebench
strace=()
if [ -n "${STRACE:-}" ]; then strace=(-strace "$(command -v strace)"); fi
"$out/pipebench" -ocikp "$out/ocikp" -unwrap "$out/ocikp-unwrap" -serve "$out/ocikp-serve" -kpfloor "$out/kpfloor" \
  -skopeo "$TOOLS_BIN/skopeo" -runs "${RUNS:-7}" -layers "${LAYERS:-5}" -size "${SIZE:-20971520}" \
  -variants "${VARIANTS:-}" -baseline "${BASELINE:-jwe-rsa}" -procs "${PROCS:-0}" "${strace[@]}"
