#!/usr/bin/env bash
# Load test and benchmark of ocikp serve: a TLS service on a loopback port,
# CLIENTS concurrent clients for DURATION (bounded), throughput, p50/p99,
# service RSS before/after, and the exec path's throughput in the same run.
#
#   CLIENTS=64 DURATION=60s scripts/load-serve.sh
#
# BASE=REV (a git revision) compares with the service built from REV in the
# same run: ROUNDS (2) rounds, each loading REV's service, then this tree's,
# so that both see the same machine state.
#
#   BASE=HEAD~1 CLIENTS=64 DURATION=15s scripts/load-serve.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
out=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$out"' EXIT
CGO_ENABLED=0 go build -o "$out/ocikp" ./cmd/ocikp
go build -o "$out/ocikp-serve" ./cmd/ocikp-serve
go build -o "$out/grpcload" ./internal/cmd/grpcload
ks=$out/keys
R=$("$out/ocikp" --keystore "$ks" keygen load 2>/dev/null)
# A throwaway CA and a server certificate for 127.0.0.1.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=load-ca \
  -keyout "$out/ca-key.pem" -out "$out/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=127.0.0.1 \
  -keyout "$out/key.pem" -out "$out/req.pem" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\n' > "$out/ext"
openssl x509 -req -in "$out/req.pem" -CA "$out/ca.pem" -CAkey "$out/ca-key.pem" -CAcreateserial -days 1 \
  -extfile "$out/ext" -out "$out/cert.pem" 2>/dev/null
# start DIR: runs the service DIR/ocikp-serve (what `ocikp serve` runs;
# named directly, so that no OCIKP_PLUGIN_DIR can pick another); sets pid
# and addr.
start() {
  "$1/ocikp-serve" --keystore "$ks" --listen 127.0.0.1:0 --tls-cert "$out/cert.pem" --tls-key "$out/key.pem" \
    --max-concurrent 256 2>"$out/serve.log" &
  pid=$!
  addr=$(logged_addr "$out/serve.log" "$pid" 's/.*"msg":"serving","listen":"\([^"]*\)".*/\1/p')
}
if [ -n "${BASE:-}" ]; then
  mkdir "$out/base" "$out/base-src"
  git archive "$BASE" | tar -x -C "$out/base-src"
  (cd "$out/base-src" && CGO_ENABLED=0 go build -o "$out/base/ocikp" ./cmd/ocikp && go build -o "$out/base/ocikp-serve" ./cmd/ocikp-serve)
  for round in $(seq "${ROUNDS:-2}"); do
    for side in base new; do
      dir=$out label="this tree"
      [ "$side" = base ] && dir=$out/base label=$BASE
      start "$dir"
      "$out/grpcload" -addr "$addr" -tls-ca "$out/ca.pem" -recipient "$R" -pid "$pid" \
        -clients "${CLIENTS:-64}" -duration "${DURATION:-60s}" | sed -n "1,2s|^|round $round, $label: |p"
      kill "$pid"
      wait "$pid" 2>/dev/null || true
      pid=
    done
  done
  exit 0
fi
start "$out"
"$out/grpcload" -addr "$addr" -tls-ca "$out/ca.pem" -recipient "$R" -pid "$pid" \
  -clients "${CLIENTS:-64}" -duration "${DURATION:-60s}" -ocikp "$out/ocikp" -keystore "$ks"
# Latency at a lighter load: the same service, 8 clients for a few seconds.
"$out/grpcload" -addr "$addr" -tls-ca "$out/ca.pem" -recipient "$R" \
  -clients 8 -duration "${LIGHTTIME:-6s}" | head -1
