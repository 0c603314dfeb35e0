#!/usr/bin/env bash
# Load test and benchmark of ocikp serve, beside its floor, in one run:
# CLIENTS concurrent clients load ocikp serve and then grpcfloor (the same
# gRPC service, TLS and transport options doing one P-256 ECDH per call and
# nothing else), alternately for ROUNDS rounds, and it prints the service
# CPU per unwrap, the floor's CPU per call, one P-256 ECDH measured in the
# same run, and their ratios; then throughput, p50/p99, the service's RSS,
# the exec path's throughput, and latency at a light load. Any failed call
# fails the script.
#
#   CLIENTS=64 DURATION=60s scripts/load-serve.sh
#
# DURATION is the loading time of one client count, shared by the 2 ×
# ROUNDS (3) measurements. TRANSPORT: tls (TLS on a loopback port, the
# default), unix (plaintext on a unix socket, as on a node), or both.
# CLIENTS may be a list (1,8,64,256): each count is measured in turn.
#
# JSON=1 prints only grpcload's JSON lines, one per measurement and one
# summary per client count and transport (internal/cmd/grpcload says what
# they hold); for scripts:
#
#   JSON=1 TRANSPORT=both CLIENTS=1,4,16,64,256 DURATION=12s scripts/load-serve.sh
#
# PROFILE=FILE also writes a CPU profile of the service (built with -tags
# pprof) over the loads of the first transport to FILE, and prints its top
# functions (go tool pprof).
#
# BASE=REV (a git revision) compares with the service built from REV in the
# same run: ROUNDS rounds, each loading REV's service, then this tree's.
#
#   BASE=HEAD~1 CLIENTS=64 DURATION=15s scripts/load-serve.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
out=$(mktemp -d)
pid= fpid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; [ -n "$fpid" ] && kill "$fpid" 2>/dev/null; wait 2>/dev/null; rm -rf "$out"' EXIT
tags=()
[ -n "${PROFILE:-}" ] && tags=(-tags pprof)
CGO_ENABLED=0 go build -o "$out/ocikp" ./cmd/ocikp
go build "${tags[@]}" -o "$out/ocikp-serve" ./cmd/ocikp-serve
go build -o "$out/grpcload" ./internal/cmd/grpcload
go build -o "$out/grpcfloor" ./internal/cmd/grpcfloor
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
sed_addr='s/.*"msg":"serving","listen":"\([^"]*\)".*/\1/p'
# listen_args T NAME: the listening flags of transport T (tls or unix).
listen_args() {
  if [ "$1" = unix ]; then
    echo "--listen unix://$out/$2.sock"
  else
    echo "--listen 127.0.0.1:0 --tls-cert $out/cert.pem --tls-key $out/key.pem"
  fi
}
# start DIR T: runs the service DIR/ocikp-serve (what `ocikp serve` runs;
# named directly, so that no OCIKP_PLUGIN_DIR can pick another) on
# transport T; sets pid and addr.
start() {
  # shellcheck disable=SC2046
  OCIKP_CPUPROFILE=${profile:-} "$1/ocikp-serve" --keystore "$ks" $(listen_args "$2" ocikp) \
    --max-concurrent 256 2>"$out/serve.log" &
  pid=$!
  addr=$(logged_addr "$out/serve.log" "$pid" "$sed_addr")
}
# start_floor T: runs grpcfloor on transport T; sets fpid and faddr.
start_floor() {
  # shellcheck disable=SC2046
  "$out/grpcfloor" $(listen_args "$1" floor) 2>"$out/floor.log" &
  fpid=$!
  faddr=$(logged_addr "$out/floor.log" "$fpid" "$sed_addr")
}
stop() {
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  pid=
}
ca_args() { [ "$1" = tls ] && echo "-tls-ca $out/ca.pem" || true; }
clients=${CLIENTS:-64}
rounds=${ROUNDS:-3}
# Each measurement loads for DURATION / (2 × ROUNDS).
secs=${DURATION:-60s}
secs=${secs%s}
each=$(awk -v d="$secs" -v r="$rounds" 'BEGIN { printf "%.3fs", d / (2 * r) }')

if [ -n "${BASE:-}" ]; then
  mkdir "$out/base" "$out/base-src"
  git archive "$BASE" | tar -x -C "$out/base-src"
  (cd "$out/base-src" && go build -o "$out/base/ocikp-serve" ./cmd/ocikp-serve)
  t=${TRANSPORT:-tls}
  for round in $(seq "$rounds"); do
    for side in base new; do
      dir=$out label="this tree"
      [ "$side" = base ] && dir=$out/base label=$BASE
      start "$dir" "$t"
      # shellcheck disable=SC2046
      "$out/grpcload" -addr "$addr" $(ca_args "$t") -recipient "$R" -pid "$pid" \
        -clients "$clients" -duration "$each" | sed -n "/^gRPC unwraps\|^CPU per call/s|^|round $round, $label: |p"
      stop
    done
  done
  exit 0
fi

case ${TRANSPORT:-tls} in
  both) transports="tls unix" ;;
  tls | unix) transports=${TRANSPORT:-tls} ;;
  *) echo "ocikp: error: TRANSPORT must be tls, unix or both" >&2; exit 1 ;;
esac
json=()
[ -n "${JSON:-}" ] && json=(-json)
first=1
for t in $transports; do
  profile=
  [ -n "${PROFILE:-}" ] && [ "$first" = 1 ] && profile=$PROFILE
  start "$out" "$t"
  start_floor "$t"
  [ -z "${JSON:-}" ] && echo "== $t: $(uptime)"
  exec_args=()
  [ "$first" = 1 ] && [ -z "${JSON:-}" ] && exec_args=(-ocikp "$out/ocikp" -keystore "$ks")
  # shellcheck disable=SC2046
  "$out/grpcload" -addr "$addr" -pid "$pid" -floor-addr "$faddr" -floor-pid "$fpid" $(ca_args "$t") \
    -recipient "$R" -clients "$clients" -rounds "$rounds" -duration "$each" -transport "$t" "${json[@]}" "${exec_args[@]}"
  if [ -z "${JSON:-}" ] && [ "$first" = 1 ]; then
    # Latency at a lighter load: the same service, 8 clients for a few seconds.
    # shellcheck disable=SC2046
    "$out/grpcload" -addr "$addr" $(ca_args "$t") -recipient "$R" -clients 8 -duration "${LIGHTTIME:-6s}" | head -1
  fi
  stop
  kill "$fpid"
  wait "$fpid" 2>/dev/null || true
  fpid=
  if [ -n "$profile" ]; then
    echo "== CPU profile of ocikp serve ($t): $profile"
    go tool pprof -top -nodecount=40 "$out/ocikp-serve" "$profile" 2>/dev/null | head -50
  fi
  first=
done
