#!/usr/bin/env bash
# Everything on docs/benchmarks.md, side by side in one run: the bare Go
# process, ocikp's exec provider and its floors per key type, the peers that
# can be run here, ocikp serve per key type beside its transport floor,
# ocicrypt's own JWE and PKCS#7 in process, the KMS path against its fake,
# the skopeo pipeline, rewrap against skopeo, and the cost-growth runs
# (layers per image, recipients per layer, concurrent clients). It records
# every figure in docs/benchmarks/results.jsonl, then internal/cmd/benchplot
# rewrites the page's generated region and the SVG plots beside it.
#
#   scripts/bench.sh                 # about 7 min on the 2-core build machine (433 s)
#   QUICK=1 scripts/bench.sh         # a smoke run of a few minutes (small counts)
#   OUT=/tmp/b PAGE=/tmp/b.md scripts/bench.sh    # write elsewhere
#
# Counts (defaults; QUICK=1 lowers them): RUNS=400 (exec processes of each
# kind), GROWTH_RUNS=100, LAYERS_N=1,10,30,100, RECIPIENTS_N=1,2,4,8,16,32,64,
# CLIENTS_N=1,4,16,64,256, SERVICE_TIME=6 (s per client count, shared by
# ROUNDS=3 rounds of ocikp serve and its floor), KMS_RUNS=200,
# PIPELINE_RUNS=5 (rounds of 5 x 20 MB layers), REWRAP_SIZE=1073741824
# (bytes, in 10 layers), SKIP=exec,inprocess,layers,recipients,service,kms,
# pipeline,rewrap (comma-separated) leaves those parts out.
#
# Peers: the Go module proxy refuses their modules here; the script asks it
# again each run and records its answer. A peer binary built by hand from
# the peer's public source may be put in PEERS_BIN (default
# ~/.cache/ocikp/peers): docs/benchmarks.md says which and how; the script
# times those it finds, in the same interleaved run as everything else.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
start_s=$SECONDS
if [ -n "${QUICK:-}" ]; then
  : "${RUNS:=60}" "${GROWTH_RUNS:=10}" "${LAYERS_N:=1,10,30}" "${RECIPIENTS_N:=1,8,64}" "${CLIENTS_N:=1,16,256}"
  : "${SERVICE_TIME:=2}" "${ROUNDS:=1}" "${KMS_RUNS:=20}" "${PIPELINE_RUNS:=1}" "${PIPELINE_LAYERS:=2}"
  : "${PIPELINE_SIZE:=4194304}" "${REWRAP_SIZE:=16777216}"
fi
RUNS=${RUNS:-400} GROWTH_RUNS=${GROWTH_RUNS:-100}
LAYERS_N=${LAYERS_N:-1,10,30,100} RECIPIENTS_N=${RECIPIENTS_N:-1,2,4,8,16,32,64} CLIENTS_N=${CLIENTS_N:-1,4,16,64,256}
SERVICE_TIME=${SERVICE_TIME:-6} ROUNDS=${ROUNDS:-3} KMS_RUNS=${KMS_RUNS:-200}
PIPELINE_RUNS=${PIPELINE_RUNS:-5} PIPELINE_LAYERS=${PIPELINE_LAYERS:-5} PIPELINE_SIZE=${PIPELINE_SIZE:-20971520}
REWRAP_SIZE=${REWRAP_SIZE:-1073741824} SKIP=,${SKIP:-},
TYPES=p256,mlkem768x25519,mlkem768p256
OUT=${OUT:-docs/benchmarks} PAGE=${PAGE:-docs/benchmarks.md}
PEERS_BIN=${PEERS_BIN:-${XDG_CACHE_HOME:-$HOME/.cache}/ocikp/peers}

tmp=$(mktemp -d)
pid= fpid=
trap 'rm -rf "$tmp"' EXIT
res=$tmp/results.jsonl
: >"$res"

# json_str TEXT: TEXT as a JSON string.
json_str() { printf '"%s"' "$(printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g' | tr -d '\000-\037')"; }
info() { printf '{"info":%s,"text":%s}\n' "$(json_str "$1")" "$(json_str "$2")" >>"$res"; }
# note SECTION NAME TEXT: a row that is only a note (what was not measured, and why).
note() { printf '{"section":%s,"name":%s,"note":%s}\n' "$(json_str "$1")" "$(json_str "$2")" "$(json_str "$3")" >>"$res"; }
skipped() { case $SKIP in *,"$1",*) return 0 ;; esac; return 1; }
# part NAME CMD...: runs one part in a subshell with errexit; its stdout
# (JSON lines) joins the results. A part that fails leaves a note with its
# last error line instead of ending the run. Each long command in a part is
# bounded by timeout.
part() {
  local name=$1 rc why
  shift
  echo "== $name ($(date -u +%H:%M:%S); load:$(uptime | sed 's/.*load average://'))" >&2
  set +e
  (set -e; "$@") >"$tmp/part.out" 2>"$tmp/part.err"
  rc=$?
  set -e
  cat "$tmp/part.out" >>"$res"
  if [ "$rc" != 0 ]; then
    why=$(grep -v '^[[:space:]]*$' "$tmp/part.err" | tail -1)
    [ "$rc" = 124 ] && why="stopped by its time bound"
    echo "   failed: $why" >&2
    note "$name" "not measured in this run" "failed: ${why:-exit $rc}"
  fi
}

echo "== building (uptime:$(uptime | sed 's/.*load average//'))" >&2
CGO_ENABLED=0 nice -n 10 go build -o "$tmp/" ./cmd/ocikp ./cmd/ocikp-unwrap
nice -n 10 go build -o "$tmp/" ./cmd/ocikp-serve ./cmd/ocikp-plugin-gcpkms ./internal/cmd/jsonecho ./internal/cmd/kemfloor \
  ./internal/cmd/execbench ./internal/cmd/ocicryptbench ./internal/cmd/grpcload ./internal/cmd/grpcfloor \
  ./internal/cmd/kmsbench ./internal/cmd/benchplot
# kmsbench finds the plugin beside ocikp, as an installation has it.
bp=$tmp/benchplot

info "date" "$(date -u '+%Y-%m-%d %H:%M UTC')"
info "commit" "$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . ':!docs/benchmarks*' 2>/dev/null || echo ' (with uncommitted changes)')"
info "machine" "$(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')), $(awk '/^MemTotal:/ {printf "%.1f", $2 / 1048576}' /proc/meminfo) GiB, Debian $(cat /etc/debian_version 2>/dev/null || echo '?')"
info "Go" "$(go version | sed 's/^go version //')"
info "settings" "RUNS=$RUNS GROWTH_RUNS=$GROWTH_RUNS LAYERS_N=$LAYERS_N RECIPIENTS_N=$RECIPIENTS_N CLIENTS_N=$CLIENTS_N SERVICE_TIME=$SERVICE_TIME ROUNDS=$ROUNDS KMS_RUNS=$KMS_RUNS PIPELINE_RUNS=$PIPELINE_RUNS REWRAP_SIZE=$REWRAP_SIZE${QUICK:+ QUICK=1}"
info "load before" "$(uptime | sed 's/.*load average: //')"
echo "nproc $(nproc); $(grep -m1 'model name' /proc/cpuinfo); $(go version)"

# Peers: ask the module proxy for each; time the binaries found in PEERS_BIN.
peers=$tmp/peers.json
echo "[" >"$peers"
sep=
add_peer() { # NAME BIN PROVIDER WRAP UNWRAP
  printf '%s{"name":%s,"bin":%s,"provider":%s,"wrap":%s,"unwrap":%s}\n' "$sep" "$(json_str "$1")" "$(json_str "$2")" \
    "$(json_str "$3")" "$(json_str "$4")" "$(json_str "$5")" >>"$peers"
  sep=,
}
for mod in github.com/lumjjb/simple-ocicrypt-keyprovider github.com/salrashid123/ocicrypt-kms-keyprovider \
  github.com/salrashid123/ocicrypt-tpm-keyprovider github.com/salrashid123/ocicrypt-pqc-keyprovider; do
  # A peer built by hand (docs/benchmarks.md, "The peers") is timed below.
  [ -x "$PEERS_BIN/${mod##*/}" ] && continue
  if ! answer=$(GOFLAGS=-mod=mod GONOSUMDB=$mod timeout 60 go list -m -versions "$mod" 2>&1); then
    # The proxy's answer, without its address.
    line=$(printf '%s\n' "$answer" | grep -v '^\s*$' | tail -2 | tr -s ' \t\n' ' ' | sed 's|reading https://[^ ]*|reading the module list|')
    note peers "${mod#github.com/}" "go list -m -versions: $line"
  else
    note peers "${mod#github.com/}" "the module proxy lists: ${answer#"$mod"}"
  fi
done
if [ -x "$PEERS_BIN/simple-ocicrypt-keyprovider" ]; then
  add_peer "lumjjb/simple-ocicrypt-keyprovider" "$PEERS_BIN/simple-ocicrypt-keyprovider" simplecrypt "any" ""
fi
if [ -x "$PEERS_BIN/ocicrypt-pqc-keyprovider" ] && [ -f "$PEERS_BIN/pqc/pub-ml-kem-768.pem" ]; then
  add_peer "salrashid123/ocicrypt-pqc-keyprovider (ML-KEM-768 key file)" "$PEERS_BIN/ocicrypt-pqc-keyprovider" pqccrypt \
    "pqc://pq?pub=$(base64 -w0 "$PEERS_BIN/pqc/pub-ml-kem-768.pem" | sed 's|+|%2B|g; s|/|%2F|g; s|=|%3D|g')" \
    "pqc://pq?key=file://$PEERS_BIN/pqc/priv-ml-kem-768-bare-seed.pem"
fi
echo "]" >>"$peers"

ex=("$tmp/execbench" -ocikp "$tmp/ocikp" -baseline "$tmp/jsonecho" -json -peers "$peers")
skipped exec || part exec timeout 900 "${ex[@]}" -unwrap "$tmp/ocikp-unwrap" -floor "$tmp/kemfloor" -runs "$RUNS" -types "$TYPES"
skipped inprocess || part inprocess timeout 300 "$tmp/ocicryptbench" -runs $((RUNS * 5)) -layers "$LAYERS_N" -recipients "$RECIPIENTS_N"
skipped layers || part layers timeout 900 "${ex[@]}" -layers "$LAYERS_N" -runs "$GROWTH_RUNS" -types p256,mlkem768x25519
skipped recipients || part recipients timeout 900 "${ex[@]}" -recipients "$RECIPIENTS_N" -runs "$GROWTH_RUNS" -types p256,mlkem768x25519

# ocikp serve over TLS on loopback, one key of each type, beside grpcfloor
# (the same gRPC service and TLS doing one ECDH per call), alternately.
service() {
  local ks=$tmp/serve-keys t addr faddr each clients
  local -A rec
  # Runs in part's subshell: stop what it started however it ends.
  trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; [ -n "$fpid" ] && kill "$fpid" 2>/dev/null; wait 2>/dev/null' EXIT
  for t in ${TYPES//,/ }; do rec[$t]=$("$tmp/ocikp" --keystore "$ks" keygen --type "$t" "$t"); done
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=bench-ca \
    -keyout "$tmp/ca-key.pem" -out "$tmp/ca.pem" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=127.0.0.1 \
    -keyout "$tmp/key.pem" -out "$tmp/req.pem" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1\n' >"$tmp/ext"
  openssl x509 -req -in "$tmp/req.pem" -CA "$tmp/ca.pem" -CAkey "$tmp/ca-key.pem" -CAcreateserial -days 1 \
    -extfile "$tmp/ext" -out "$tmp/cert.pem" 2>/dev/null
  local sed_addr='s/.*"msg":"serving","listen":"\([^"]*\)".*/\1/p'
  "$tmp/ocikp-serve" --keystore "$ks" --listen 127.0.0.1:0 --tls-cert "$tmp/cert.pem" --tls-key "$tmp/key.pem" \
    --max-concurrent 256 2>"$tmp/serve.log" &
  pid=$!
  "$tmp/grpcfloor" -listen 127.0.0.1:0 -tls-cert "$tmp/cert.pem" -tls-key "$tmp/key.pem" 2>"$tmp/floor.log" &
  fpid=$!
  addr=$(logged_addr "$tmp/serve.log" "$pid" "$sed_addr")
  faddr=$(logged_addr "$tmp/floor.log" "$fpid" "$sed_addr")
  each=$(awk -v d="$SERVICE_TIME" -v r="$ROUNDS" 'BEGIN { printf "%.3fs", d / (2 * r) }')
  for t in ${TYPES//,/ }; do
    clients=64
    [ "$t" = p256 ] && clients=$CLIENTS_N
    timeout 900 "$tmp/grpcload" -addr "$addr" -pid "$pid" -floor-addr "$faddr" -floor-pid "$fpid" -tls-ca "$tmp/ca.pem" \
      -recipient "${rec[$t]}" -clients "$clients" -rounds "$ROUNDS" -duration "$each" -transport tls -json >"$tmp/grpc-$t.out"
    "$bp" -import grpcload -label "$t" <"$tmp/grpc-$t.out"
  done
}
skipped service || part service service

kms() {
  timeout 600 "$tmp/kmsbench" -ocikp "$tmp/ocikp" -runs "$KMS_RUNS" >"$tmp/kms.out"
  "$bp" -import kms <"$tmp/kms.out"
}
skipped kms || part kms kms

pipeline() {
  RUNS=$PIPELINE_RUNS LAYERS=$PIPELINE_LAYERS SIZE=$PIPELINE_SIZE timeout 1200 scripts/bench-pipeline.sh >"$tmp/pipeline.out"
  "$bp" -import pipeline <"$tmp/pipeline.out"
}
if ! skipped pipeline; then
  if [ -x scripts/bench-pipeline.sh ]; then part pipeline pipeline; else note pipeline "not measured" "scripts/bench-pipeline.sh is missing"; fi
fi

rewrap() {
  local tools
  tools=$(scripts/install-tools.sh skopeo)
  nice -n 10 go build -o "$tmp/" ./cmd/ocikp-image ./internal/cmd/rewrapbench
  timeout 900 "$tmp/rewrapbench" -ocikp "$tmp/ocikp" -skopeo "$tools/skopeo" -size "$REWRAP_SIZE" -layers 10 >"$tmp/rewrap.out"
  "$bp" -import rewrap <"$tmp/rewrap.out"
}
skipped rewrap || part rewrap rewrap

info "load after" "$(uptime | sed 's/.*load average: //')"
info "wall time" "$((SECONDS - start_s)) s"
mkdir -p "$OUT"
cp "$res" "$OUT/results.jsonl"
"$bp" -in "$OUT/results.jsonl" -md "$PAGE" -svg "$OUT"
echo "== done in $((SECONDS - start_s)) s: $OUT/results.jsonl, $PAGE, $OUT/*.svg" >&2
